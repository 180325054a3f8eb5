import { describe, expect, it } from 'vitest';
import { admissionRates } from '../components/RateChart';
import { formatMoney, parseMoneyToCents } from './money';
import { DEFAULT_POLL_MS, MAX_BACKOFF_MS, nextPollDelay } from './polling';
import { rememberTicket, ticketForSale, forgetTicket } from './ticketStore';
import { formatWait } from './time';
import { observeServerDate, now } from './clock';

describe('money', () => {
  it('formats minor units in their currency', () => {
    expect(formatMoney(1999, 'USD', 'en-US')).toBe('$19.99');
    expect(formatMoney(500, 'JPY', 'en-US')).toBe('¥500');
    expect(formatMoney(123456, 'eur', 'en-US')).toBe('€1,234.56');
  });

  it('parses typed prices into minor units', () => {
    expect(parseMoneyToCents('19.99', 'USD')).toBe(1999);
    expect(parseMoneyToCents('5', 'USD')).toBe(500);
    expect(parseMoneyToCents('0.5', 'USD')).toBe(50);
    expect(parseMoneyToCents('1.999', 'USD')).toBeNull();
    expect(parseMoneyToCents('abc', 'USD')).toBeNull();
  });
});

describe('poll pacing', () => {
  it("waits the server's poll_after_ms, never less", () => {
    expect(nextPollDelay(3000, 0)).toBe(3000);
    expect(nextPollDelay(null, 0)).toBe(DEFAULT_POLL_MS);
    expect(nextPollDelay(0, 0)).toBe(DEFAULT_POLL_MS);
  });

  it('backs off exponentially on errors, capped, and honours Retry-After', () => {
    const noJitter = () => 0;
    expect(nextPollDelay(1000, 1, null, noJitter)).toBe(2000);
    expect(nextPollDelay(1000, 3, null, noJitter)).toBe(8000);
    expect(nextPollDelay(1000, 10, null, noJitter)).toBe(MAX_BACKOFF_MS);
    expect(nextPollDelay(1000, 1, 20, noJitter)).toBe(20_000);
    expect(nextPollDelay(1000, 1, null, () => 1)).toBe(2400);
  });
});

describe('ticket memory', () => {
  it('keeps the first position of a ticket across updates and forgets on request', () => {
    rememberTicket({ id: 't1', sale_id: 's1', position: 50 });
    rememberTicket({ id: 't1', sale_id: 's1', position: 20 });
    expect(ticketForSale('s1')).toEqual({ ticketId: 't1', saleId: 's1', firstPosition: 50 });
    rememberTicket({ id: 't2', sale_id: 's1', position: 7 });
    expect(ticketForSale('s1')?.firstPosition).toBe(7);
    forgetTicket('t2');
    expect(ticketForSale('s1')).toBeUndefined();
  });
});

describe('admissions chart data', () => {
  it('derives admissions per second from tickets_issued deltas', () => {
    const rates = admissionRates([
      { at: 0, ticketsIssued: 0 },
      { at: 1000, ticketsIssued: 50 },
      { at: 3000, ticketsIssued: 250 },
      { at: 4000, ticketsIssued: 240 },
    ]);
    expect(rates.map((r) => r.perSecond)).toEqual([50, 100, 0]);
  });
});

describe('wait and clock', () => {
  it('says the wait in words', () => {
    expect(formatWait(2)).toBe('a few seconds');
    expect(formatWait(45)).toBe('about 45 seconds');
    expect(formatWait(150)).toBe('about 3 minutes');
    expect(formatWait(4800)).toBe('about 1 h 20 min');
    expect(formatWait(null)).toBe('Working it out…');
  });

  it("follows the server's clock only when it is far off", () => {
    const received = Date.now();
    observeServerDate(new Date(received + 500).toUTCString(), received);
    expect(Math.abs(now() - Date.now())).toBeLessThan(50);
    observeServerDate(new Date(received + 60_000).toUTCString(), received);
    expect(now() - Date.now()).toBeGreaterThan(58_000);
  });
});
