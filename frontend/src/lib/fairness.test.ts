import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { FairnessPage } from '../api/types';
import { compareBytes, drawOrder, recompute, seedMatchesCommitment } from './fairness';

// An independent implementation with Node's crypto: the order the contract defines.
function nodeOrder(seedHex: string, ids: string[]): string[] {
  const seed = Buffer.from(seedHex, 'hex');
  const digest = (id: string) => createHmac('sha256', seed).update(id, 'utf8').digest();
  return [...ids].sort((a, b) => Buffer.compare(digest(a), digest(b)));
}

const seed = randomBytes(32).toString('hex');
const ids = Array.from({ length: 250 }, (_, i) => `tkt_${'0'.repeat(15)}${i % 10}_${randomBytes(16).toString('hex')}`);
// A fixed vector too, so a change of the order's definition cannot pass unnoticed.
const fixedSeed = '00'.repeat(31) + '01';
const fixedIds = ['tkt_a', 'tkt_b', 'tkt_c', 'tkt_ü'];

function pages(all: string[], size: number, over: Partial<FairnessPage> = {}) {
  const sorted = [...all].sort();
  const requested: (string | null)[] = [];
  const fetchPage = async (cursor: string | null): Promise<FairnessPage> => {
    requested.push(cursor);
    const start = cursor ? Number(cursor) : 0;
    const next = start + size < sorted.length ? String(start + size) : null;
    return {
      algorithm: 'hmac-sha256-v1',
      commitment: createHash('sha256').update(Buffer.from(seed, 'hex')).digest('hex'),
      seed,
      lobby_size: sorted.length,
      entries: sorted.slice(start, start + size),
      next_cursor: next,
      ...over,
    };
  };
  return { fetchPage, requested };
}

describe('the lobby draw recomputed with Web Crypto', () => {
  it('orders the ids as HMAC-SHA256 under the seed, compared as raw bytes, like Node does', async () => {
    expect(await drawOrder(seed, ids)).toEqual(nodeOrder(seed, ids));
    expect(await drawOrder(fixedSeed, fixedIds)).toEqual(nodeOrder(fixedSeed, fixedIds));
  });

  it('compares digests byte by byte, not as signed numbers or strings', () => {
    expect(compareBytes(new Uint8Array([0x7f]), new Uint8Array([0x80]))).toBeLessThan(0);
    expect(compareBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(0);
  });

  it('checks the seed against the commitment', async () => {
    const commitment = createHash('sha256').update(Buffer.from(seed, 'hex')).digest('hex');
    expect(await seedMatchesCommitment(seed, commitment)).toBe(true);
    expect(await seedMatchesCommitment(seed, commitment.replace(/^./, (c) => (c === '0' ? '1' : '0')))).toBe(false);
  });

  it('pages through every entry with next_cursor and gives each ticket its place', async () => {
    const { fetchPage, requested } = pages(ids, 100);
    const result = await recompute(fetchPage);
    expect(requested).toEqual([null, '100', '200']);
    expect(result.entries).toBe(250);
    expect(result.seedMatches).toBe(true);
    const expected = nodeOrder(seed, ids);
    expect(result.order).toEqual(expected);
    expect(result.placeOf(expected[0])).toBe(1);
    expect(result.placeOf(expected[249])).toBe(250);
    expect(result.placeOf('tkt_not_in_the_lobby')).toBeNull();
  });

  it('before the start the seed is not known: nothing to check yet', async () => {
    const { fetchPage } = pages(ids.slice(0, 3), 1000, { seed: null });
    const result = await recompute(fetchPage);
    expect(result.seedMatches).toBeNull();
    expect(result.order).toEqual([]);
  });
});
