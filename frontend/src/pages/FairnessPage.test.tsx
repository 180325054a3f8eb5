import { createHash, createHmac, randomBytes } from 'node:crypto';
import { act, screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { tokens } from '../api/client';
import { rememberTicket } from '../lib/ticketStore';
import { customer, sale, ticket } from '../test/fixtures';
import type { FairnessPage as FairnessAnswer } from '../api/types';
import { installFetch, json } from '../test/http';
import { advance, renderRoute } from '../test/render';
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

// A v2 draw on League of Entropy quicknet round 657413; the order of these seven ids under this
// seed and randomness was computed in Python (see lib/fairness.test.ts for the script).
const quicknet = {
  chain_hash: '52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971',
  public_key:
    '83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a',
  period_seconds: 3,
  genesis_time: 1692803367,
  round: 657413,
};
const drawnBeacon = {
  ...quicknet,
  signature:
    'b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b',
  randomness: 'fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587',
};
const v2: FairnessAnswer = {
  algorithm: 'hmac-sha256-drand-v2',
  commitment: '0a28e9ffef0073f9a6a674cf57ee77307f38f0f1bebb087888d9011ed0eeefdf',
  seed: '00'.repeat(31) + '2a',
  lobby_size: 7,
  entries: ['tkt_01', 'tkt_02', 'tkt_03', 'tkt_04', 'tkt_05', 'tkt_06', 'tkt_ü'],
  next_cursor: null,
  beacon: drawnBeacon,
  entries_digest: 'ed7ee6adf394e141453f6eadf6c23b221bff36b0d99b101aa6ecb0514693a873',
  closed_at: '2023-09-15T10:59:50Z',
};
// Order: tkt_03, tkt_05, tkt_02, ...: tkt_05 is place 2.
const v2Mine = 'tkt_05';

function serveV2(answers: Array<() => FairnessAnswer>, saleStatus: 'drawing' | 'open' = 'open') {
  const fairnessAnswers = [...answers];
  return installFetch({
    'GET /api/auth/me': () => json(200, customer),
    'GET /api/sales/s1': () => {
      const current = fairnessAnswers[0]();
      const { seed: _seed, entries: _entries, next_cursor: _next, lobby_size: _size, ...fairness } = current;
      return json(200, sale({ status: current.beacon?.signature ? 'open' : saleStatus, fairness }));
    },
    'GET /api/tickets/t1': () => json(200, ticket({ id: v2Mine, status: 'reserved', position: null })),
    'GET /api/sales/s1/fairness': () => json(200, fairnessAnswers[0]()),
    // Test hook: the next answer from now on.
  }) && {
    next: () => fairnessAnswers.length > 1 && fairnessAnswers.shift(),
  };
}

/** waitFor for fake timers: real turns of the event loop (Web Crypto answers on them). */
async function eventually(check: () => void, turns = 500) {
  for (let turn = 0; ; turn += 1) {
    try {
      check();
      return;
    } catch (failure) {
      if (turn >= turns) throw failure;
    }
    await act(async () => {
      await new Promise((resolve) => setImmediate(resolve));
    });
  }
}

const mark = (name: string) => screen.getByTestId(`fairness-check-${name}-mark`).textContent;

describe('fairness page of a beacon draw (hmac-sha256-drand-v2)', () => {
  beforeEach(() => {
    tokens.set({ access_token: 'a' });
  });

  it('lists each check with a pass mark and what it proves, and the summary', async () => {
    rememberTicket({ id: v2Mine, sale_id: 's1', position: 2 });
    serveV2([() => v2]);
    renderRoute(<FairnessPage />, at(v2Mine));
    await waitFor(() => expect(screen.getByTestId('fairness-summary').textContent).toContain('Every check passed'));
    for (const name of ['signature', 'randomness', 'round_time', 'commitment', 'entries', 'order']) {
      expect(mark(name)).toBe('✓ Passed');
    }
    expect(screen.getByTestId('fairness-check-signature').textContent).toContain(
      "The randomness comes from the public drand beacon round 657413: its signature checks against the League of Entropy's public key, so neither the shop nor anyone else chose it.",
    );
    expect(screen.getByTestId('fairness-check-entries').textContent).toContain(
      'the published fingerprint matches these 7 entries',
    );
    expect(screen.getByTestId('fairness-check-order').textContent).toContain('Your ticket is place 2, as it showed.');
    expect(screen.getByTestId('fairness-computed-place').textContent).toBe('2 of 7');
    expect(screen.getByTestId('fairness-verdict').textContent).toBe('matches');
    expect(screen.getByTestId('fairness-seed-check').textContent).toBe('yes');
    expect(screen.getByTestId('fairness-signature').textContent).toBe(drawnBeacon.signature);
    expect(screen.getByTestId('fairness-check-round_time').textContent).not.toContain('announced');
  });

  it('a round moved after a late close says which round was announced', async () => {
    serveV2([() => ({ ...v2, beacon: { ...drawnBeacon, round_moved_from: 657410 } })]);
    renderRoute(<FairnessPage />, at(v2Mine));
    await waitFor(() => expect(screen.getByTestId('fairness-summary').textContent).toContain('Every check passed'));
    expect(screen.getByTestId('fairness-check-round_time').textContent).toContain(
      'The sale announced round 657410, but the close was recorded too late for it',
    );
    expect(screen.getByTestId('fairness-round').textContent).toContain('instead of round 657410 announced at creation');
  });

  it('a signature that does not check fails, and the summary says the draw cannot be shown fair', async () => {
    const forged = { ...v2, beacon: { ...drawnBeacon, round: 657414 } };
    serveV2([() => forged]);
    renderRoute(<FairnessPage />, at(v2Mine));
    await waitFor(() => expect(screen.getByTestId('fairness-summary').textContent).toContain('2 of 6 checks failed'));
    expect(mark('signature')).toBe('✗ Failed');
    expect(mark('order')).toBe('✗ Failed');
    expect(mark('commitment')).toBe('✓ Passed');
    expect(screen.getByTestId('fairness-summary').textContent).not.toContain('Every check passed');
  });

  it('a ticket that showed a place behind the drawn one fails the order check', async () => {
    rememberTicket({ id: v2Mine, sale_id: 's1', position: 4 });
    serveV2([() => v2]);
    renderRoute(<FairnessPage />, at(v2Mine));
    await waitFor(() => expect(screen.getByTestId('fairness-summary').textContent).toContain('1 of 6 checks failed'));
    expect(mark('order')).toBe('✗ Failed');
    expect(screen.getByTestId('fairness-check-order').textContent).toContain('But your ticket showed place 4');
  });

  it('while drawing: the lobby is closed and the draw waits for the round; the checks follow once it is out', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const drawing: FairnessAnswer = { ...v2, seed: null, beacon: quicknet };
    const http = serveV2([() => drawing, () => v2], 'drawing');
    renderRoute(<FairnessPage />, at(v2Mine));
    await advance();
    await eventually(() => expect(screen.getByTestId('fairness-stage').textContent).toContain('The lobby closed at'));
    const stage = screen.getByTestId('fairness-stage').textContent;
    expect(stage).toContain('with 7 entries');
    expect(stage).toContain('The draw waits for drand round 657413, due at');
    expect(screen.queryByTestId('fairness-summary')).toBeNull();
    expect(mark('entries')).toBe('✓ Passed');
    expect(mark('round_time')).toBe('✓ Passed');
    expect(screen.getByTestId('fairness-check-round_time').textContent).toContain('Round 657413 is due at');
    expect(screen.queryByTestId('fairness-check-signature')).toBeNull();
    expect(screen.getByTestId('fairness-computed-place').textContent).toBe('after the draw');

    http.next(); // the round is out
    await advance(3000);
    await eventually(() => expect(screen.getByTestId('fairness-summary').textContent).toContain('Every check passed'));
    expect(screen.queryByTestId('fairness-stage')).toBeNull();
    expect(screen.getByTestId('fairness-check-round_time').textContent).toContain('Round 657413 was produced at');
    expect(screen.getByTestId('fairness-computed-place').textContent).toBe('2 of 7');
  });

  it('before the close: what will happen', async () => {
    const lobby: FairnessAnswer = {
      ...v2,
      seed: null,
      beacon: quicknet,
      entries: [],
      lobby_size: 0,
      entries_digest: undefined,
      closed_at: undefined,
    };
    serveV2([() => lobby]);
    renderRoute(<FairnessPage />, at(v2Mine));
    await waitFor(() => expect(screen.getByTestId('fairness-stage').textContent).toContain('The lobby is open'));
    expect(screen.getByTestId('fairness-stage').textContent).toContain('drawn with drand round 657413');
    expect(screen.getByTestId('fairness-checks').children).toHaveLength(0);
    expect(screen.getByTestId('fairness-seed').textContent).toBe('revealed once drand round 657413 is out');
  });
});
