import { createHash, createHmac, randomBytes } from 'node:crypto';
import { screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { tokens } from '../api/client';
import { rememberTicket } from '../lib/ticketStore';
import { customer, sale, ticket } from '../test/fixtures';
import { installFetch, json } from '../test/http';
import { renderRoute } from '../test/render';
import { FairnessPage } from './FairnessPage';

const seed = randomBytes(32).toString('hex');
const commitment = createHash('sha256').update(Buffer.from(seed, 'hex')).digest('hex');
const ids = Array.from({ length: 40 }, (_, i) => `tkt_${i}_${randomBytes(8).toString('hex')}`).sort();
// The order computed with Node's crypto, independently of the page's Web Crypto code.
const digest = (id: string) => createHmac('sha256', Buffer.from(seed, 'hex')).update(id, 'utf8').digest();
const order = [...ids].sort((a, b) => Buffer.compare(digest(a), digest(b)));
const mine = order[6]; // place 7

function serve(revealed: boolean) {
  return installFetch({
    'GET /api/auth/me': () => json(200, customer),
    'GET /api/sales/s1': () => json(200, sale({ status: revealed ? 'open' : 'lobby', lobby_size: ids.length })),
    'GET /api/tickets/t1': () => json(200, ticket({ id: mine, status: 'reserved', position: null })),
    'GET /api/sales/s1/fairness': (call) => {
      const cursor = new URL(call.path, 'http://x').searchParams.get('cursor');
      const start = cursor ? Number(cursor) : 0;
      return json(200, {
        algorithm: 'hmac-sha256-v1',
        commitment,
        seed: revealed ? seed : null,
        lobby_size: ids.length,
        entries: ids.slice(start, start + 15),
        next_cursor: start + 15 < ids.length ? String(start + 15) : null,
      });
    },
  });
}

const at = (ticketId: string) => ({ path: `/sales/s1/fairness?ticket=${ticketId}`, pattern: '/sales/:saleId/fairness' });

describe('fairness page', () => {
  beforeEach(() => {
    tokens.set({ access_token: 'a' });
  });

  it('recomputes the draw from every page, checks the seed and finds the place the ticket showed', async () => {
    rememberTicket({ id: mine, sale_id: 's1', position: 7 });
    const http = serve(true);
    renderRoute(<FairnessPage />, at(mine));
    await waitFor(() => expect(screen.getByTestId('fairness-verdict').textContent).toBe('matches'));
    expect(screen.getByTestId('fairness-commitment').textContent).toBe(commitment);
    expect(screen.getByTestId('fairness-seed').textContent).toBe(seed);
    expect(screen.getByTestId('fairness-algorithm').textContent).toBe('hmac-sha256-v1');
    expect(screen.getByTestId('fairness-seed-check').textContent).toBe('yes');
    expect(screen.getByTestId('fairness-computed-place').textContent).toBe('7 of 40');
    expect(screen.getByTestId('fairness-shown-place').textContent).toBe('7');
    const pages = http.calls.filter((c) => c.path.startsWith('/api/sales/s1/fairness?'));
    expect(pages.map((c) => new URL(c.path, 'http://x').searchParams.get('cursor'))).toEqual([null, '15', '30']);
  });

  it('says so when the ticket showed a place behind the drawn one', async () => {
    rememberTicket({ id: mine, sale_id: 's1', position: 9 });
    serve(true);
    renderRoute(<FairnessPage />, at(mine));
    await waitFor(() => expect(screen.getByTestId('fairness-verdict').textContent).toContain('differs'));
  });

  it('before the start: the commitment, and the seed revealed at the start', async () => {
    serve(false);
    renderRoute(<FairnessPage />, at(mine));
    await waitFor(() => expect(screen.getByTestId('fairness-seed').textContent).toContain('revealed at the start'));
    expect(screen.getByTestId('fairness-commitment').textContent).toBe(commitment);
    expect(screen.getByTestId('fairness-computed-place').textContent).toBe('after the start');
    expect(screen.getByTestId('fairness-verdict').textContent).toBe('nothing to compare yet');
  });
});
