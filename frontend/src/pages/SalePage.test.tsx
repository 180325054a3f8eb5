import { fireEvent, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { tokens } from '../api/client';
import { ticketForSale } from '../lib/ticketStore';
import { formatTimeOfDay } from '../lib/time';
import { customer, product, sale, ticket } from '../test/fixtures';
import { apiError, installFetch, json, type Answer } from '../test/http';
import { advance, renderRoute } from '../test/render';
import { SalePage } from './SalePage';

const at = { path: '/sales/s1', pattern: '/sales/:saleId' };

function serve(routes: Record<string, (() => Answer) | Array<() => Answer>>) {
  return installFetch({
    'GET /api/auth/me': () => json(200, customer),
    'GET /api/products/p1': () => json(200, product),
    'GET /api/sales/s1/tickets/mine': () => apiError(404, 'not_found', 'No ticket.'),
    ...routes,
  });
}

describe('sale page', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T11:59:57Z'));
    tokens.set({ access_token: 'a' });
  });

  it('counts down to the start, then the Buy button joins the line and opens the queue page', async () => {
    const http = serve({
      'GET /api/sales/s1': [() => json(200, sale({ status: 'scheduled' })), () => json(200, sale())],
      'POST /api/sales/s1/tickets': () => json(202, ticket()),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('sale-countdown').textContent).toBe('00:03');
    expect(screen.getByTestId('buy-button')).toHaveProperty('disabled', true);

    await advance(3000);
    const buy = screen.getByTestId('buy-button');
    expect(buy).toHaveProperty('disabled', false);
    expect(screen.queryByTestId('sale-countdown')).toBeNull();

    fireEvent.click(buy);
    await advance();
    expect(http.callsTo('POST', '/api/sales/s1/tickets')[0].body).toEqual({ quantity: 1 });
    expect(screen.getByTestId('location').textContent).toBe('/tickets/t1');
    expect(ticketForSale('s1')?.ticketId).toBe('t1');
  });

  it('shows the sold-out message on 410', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale()),
      'POST /api/sales/s1/tickets': () => apiError(410, 'sold_out', 'Sold out.'),
    });
    renderRoute(<SalePage />, at);
    await advance();
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    expect(screen.getByTestId('sold-out-message').textContent).toContain('Sold out');
    expect(screen.queryByTestId('buy-button')).toBeNull();
  });

  it('says plainly that the waiting room is full on 409 queue_full', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale()),
      'POST /api/sales/s1/tickets': () => apiError(409, 'queue_full', 'Full.'),
    });
    renderRoute(<SalePage />, at);
    await advance();
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    expect(screen.getByTestId('buy-error').textContent).toContain('The waiting room is full right now');
    expect(screen.getByTestId('buy-button')).toHaveProperty('disabled', false);
  });

  it('holds the Buy button for Retry-After seconds on 429', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale()),
      'POST /api/sales/s1/tickets': () => apiError(429, 'rate_limited', 'Too many tries.', {}, { 'Retry-After': '3' }),
    });
    renderRoute(<SalePage />, at);
    await advance();
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    expect(screen.getByTestId('buy-error').textContent).toBe('Too many tries.');
    expect(screen.getByTestId('buy-button')).toHaveProperty('disabled', true);
    await advance(3000);
    expect(screen.getByTestId('buy-button')).toHaveProperty('disabled', false);
  });

  it('finds a live ticket again through tickets/mine', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale()),
      'GET /api/sales/s1/tickets/mine': () => json(200, ticket({ id: 't7', position: 12 })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('resume-ticket').getAttribute('href')).toBe('/tickets/t7');
    expect(screen.queryByTestId('buy-button')).toBeNull();
  });

  it('joins the lobby before the start, then says when the places are drawn', async () => {
    const lobbySale = sale({ status: 'lobby', lobby_opens_at: '2030-01-01T11:00:00Z', lobby_size: 3 });
    const http = serve({
      'GET /api/sales/s1': () => json(200, lobbySale),
      'POST /api/sales/s1/tickets': () => json(202, ticket({ status: 'lobby', position: null })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('sale-countdown').textContent).toBe('00:03');
    expect(screen.queryByTestId('buy-button')).toBeNull();
    const join = screen.getByTestId('join-lobby-button');
    expect(join.textContent).toBe('Join the lobby');
    fireEvent.click(join);
    await advance();
    expect(http.callsTo('POST', '/api/sales/s1/tickets')[0].body).toEqual({ quantity: 1 });
    expect(screen.getByTestId('location').textContent).toBe('/tickets/t1');
  });

  it("a draw sale says the card is authorised now and charged only if drawn, and entering opens the entry's page", async () => {
    const drawSale = sale({ status: 'lobby', mode: 'draw', lobby_opens_at: '2030-01-01T11:00:00Z' });
    const http = serve({
      'GET /api/sales/s1': () => json(200, drawSale),
      'POST /api/sales/s1/tickets': () =>
        json(202, ticket({ status: 'lobby', position: null, hold: { status: 'required', payment_intent_id: null, client_secret: null, amount_cents: 4999, currency: 'USD' } })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('draw-explainer').textContent).toContain(
      'Enter the draw: your card is authorised now and charged only if you are drawn',
    );
    expect(screen.queryByTestId('lobby-explainer')).toBeNull();
    const enter = screen.getByTestId('join-lobby-button');
    expect(enter.textContent).toBe('Enter the draw');
    fireEvent.click(enter);
    await advance();
    expect(http.callsTo('POST', '/api/sales/s1/tickets')).toHaveLength(1);
    expect(screen.getByTestId('location').textContent).toBe('/tickets/t1');
  });

  it('a shopper back in the lobby is told they are in', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale({ status: 'lobby', lobby_opens_at: '2030-01-01T11:00:00Z' })),
      'GET /api/sales/s1/tickets/mine': () => json(200, ticket({ status: 'lobby', position: null })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('lobby-message').textContent).toBe(
      `You're in: at ${formatTimeOfDay('2030-01-01T12:00:00Z')} everyone in the lobby gets a random place.`,
    );
    expect(screen.queryByTestId('join-lobby-button')).toBeNull();
  });

  it('before the lobby opens the button waits', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale({ status: 'scheduled', lobby_opens_at: '2030-01-01T11:59:59Z' })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('buy-button')).toHaveProperty('disabled', true);
    await advance(2000);
    expect(screen.getByTestId('join-lobby-button')).toHaveProperty('disabled', false);
  });
});

describe('entry requirements on the sale page', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:05Z'));
    tokens.set({ access_token: 'a' });
  });

  const requiring = { verified_email: true, challenge: false, one_card: true };

  it('says what entry needs, and asks an unverified shopper to confirm the email (with a resend)', async () => {
    const http = serve({
      'GET /api/auth/me': () => json(200, { ...customer, email_verified: false }),
      'GET /api/sales/s1': () => json(200, sale({ entry: requiring })),
      'POST /api/auth/verify-email/request': () => json(202, { status: 'sending' }),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.getByTestId('sale-entry').textContent).toBe('Entry: verified email · one card per person');
    expect(screen.getByTestId('verify-banner').textContent).toContain('open to verified accounts');
    fireEvent.click(screen.getByTestId('resend-verification'));
    await advance();
    expect(http.callsTo('POST', '/api/auth/verify-email/request')).toHaveLength(1);
    expect(screen.getByTestId('resend-done').textContent).toBe('A new link is on its way.');
  });

  it('shows no banner to a verified shopper, nor on a sale open to all', async () => {
    serve({
      'GET /api/auth/me': () => json(200, { ...customer, email_verified: true }),
      'GET /api/sales/s1': () => json(200, sale({ entry: requiring })),
    });
    const first = renderRoute(<SalePage />, at);
    await advance();
    expect(screen.queryByTestId('verify-banner')).toBeNull();
    first.unmount();
    serve({
      'GET /api/auth/me': () => json(200, { ...customer, email_verified: false }),
      'GET /api/sales/s1': () => json(200, sale({ entry: { verified_email: false, challenge: false, one_card: false } })),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.queryByTestId('verify-banner')).toBeNull();
    expect(screen.queryByTestId('sale-entry')).toBeNull();
  });

  it('shows the banner when the API refuses an unverified shopper', async () => {
    serve({
      'GET /api/sales/s1': () => json(200, sale({ entry: requiring })),
      'POST /api/sales/s1/tickets': () =>
        apiError(403, 'email_unverified', 'This sale is open to verified accounts only: confirm your email first.'),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(screen.queryByTestId('verify-banner')).toBeNull();
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    expect(screen.getByTestId('verify-banner')).toBeTruthy();
    expect(screen.getByTestId('buy-error').textContent).toContain('verified accounts only');
  });
});
