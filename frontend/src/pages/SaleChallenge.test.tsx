import { fireEvent, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { tokens } from '../api/client';
import { challengeExpiry, payloadFor, type AltchaChallenge } from '../lib/entryChallenge';
import { customer, product, sale, ticket } from '../test/fixtures';
import { apiError, installFetch, json, type Answer } from '../test/http';
import { advance, renderRoute } from '../test/render';
import { SalePage } from './SalePage';

// The widget's Web Workers do not run under jsdom: its solver answers at once here (the real
// one runs in the browser test, tests/browser/test_entry_challenge.py).
const solver = vi.hoisted(() => ({ counter: 4242 }));
vi.mock('altcha/lib', () => ({
  solveChallengeWorkers: vi.fn(async () => ({ counter: solver.counter++, derivedKey: '' })),
}));

const at = { path: '/sales/s1', pattern: '/sales/:saleId' };
const CHALLENGE: AltchaChallenge = {
  algorithm: 'SHA-256',
  challenge: 'ab'.repeat(32),
  maxnumber: 50000,
  salt: '00ff?expires=1893542400&sale=s1&',
  signature: 'cd'.repeat(32),
};

function decoded(payload: unknown) {
  return JSON.parse(atob(String(payload)));
}

function serve(routes: Record<string, (() => Answer) | Array<() => Answer>>) {
  return installFetch({
    'GET /api/auth/me': () => json(200, customer),
    'GET /api/products/p1': () => json(200, product),
    'GET /api/sales/s1/tickets/mine': () => apiError(404, 'not_found', 'No ticket.'),
    'GET /api/sales/s1/challenge': () => json(200, CHALLENGE),
    ...routes,
  });
}

describe('a sale that asks for a proof-of-work', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T11:59:57Z'));
    tokens.set({ access_token: 'a' });
    solver.counter = 4242;
  });

  it('reads the expiry from the salt and builds the payload the server checks', () => {
    expect(challengeExpiry(CHALLENGE)).toBe(1893542400 * 1000);
    expect(decoded(payloadFor(CHALLENGE, 7, 120))).toEqual({
      algorithm: 'SHA-256', challenge: CHALLENGE.challenge, number: 7, salt: CHALLENGE.salt,
      signature: CHALLENGE.signature, took: 120,
    });
  });

  it('solves while the shopper waits for the start, and sends the solution with Buy', async () => {
    const http = serve({
      'GET /api/sales/s1': [
        () => json(200, sale({ status: 'scheduled', entry: { verified_email: false, challenge: true, one_card: true } })),
        () => json(200, sale({ entry: { verified_email: false, challenge: true, one_card: true } })),
      ],
      'POST /api/sales/s1/tickets': () => json(202, ticket()),
    });
    renderRoute(<SalePage />, at);
    await advance();
    expect(http.callsTo('GET', '/api/sales/s1/challenge')).toHaveLength(1);
    expect(screen.getByTestId('challenge-status').dataset.ready).toBe('true');

    await advance(3000);
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    const body = http.callsTo('POST', '/api/sales/s1/tickets')[0].body as Record<string, unknown>;
    expect(body.quantity).toBe(1);
    expect(decoded(body.altcha)).toMatchObject({ number: 4242, challenge: CHALLENGE.challenge });
    expect(screen.getByTestId('location').textContent).toBe('/tickets/t1');
  });

  it('solves a fresh challenge and knocks again when the server refused the last one', async () => {
    const http = serve({
      'GET /api/sales/s1': () => json(200, sale({ entry: { verified_email: false, challenge: true, one_card: true } })),
      'POST /api/sales/s1/tickets': [
        () => apiError(403, 'challenge_required', 'Used already.', { challenge_url: '/api/sales/s1/challenge' }),
        () => json(202, ticket()),
      ],
    });
    renderRoute(<SalePage />, at);
    await advance();
    fireEvent.click(screen.getByTestId('buy-button'));
    await advance();
    const [first, second] = http.callsTo('POST', '/api/sales/s1/tickets').map((call) => decoded((call.body as Record<string, unknown>).altcha));
    expect(first.number).not.toBe(second.number);
    expect(screen.getByTestId('location').textContent).toBe('/tickets/t1');
  });

  it('fetches nothing for a sale open to all', async () => {
    const http = serve({ 'GET /api/sales/s1': () => json(200, sale()) });
    renderRoute(<SalePage />, at);
    await advance();
    expect(http.callsTo('GET', '/api/sales/s1/challenge')).toHaveLength(0);
    expect(screen.queryByTestId('challenge-status')).toBeNull();
  });
});
