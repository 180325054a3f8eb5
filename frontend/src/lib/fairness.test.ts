import { createHash, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { FairnessPage } from '../api/types';
import {
  beaconSignatureVerifies,
  compareBytes,
  drawKey,
  drawOrder,
  drawOrderV2,
  entriesDigest,
  entriesMatchDigest,
  randomnessMatchesSignature,
  recompute,
  roundAfterClose,
  roundTime,
  seedMatchesCommitment,
} from './fairness';

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

// ------------------------------------------------------------------ v2: hmac-sha256-drand-v2

// League of Entropy quicknet (bls-unchained-g1-rfc9380), round 657413 as the network published it.
const quicknet = {
  chain_hash: '52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971',
  public_key:
    '83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a',
  period_seconds: 3,
  genesis_time: 1692803367,
  round: 657413,
};
const signature =
  'b713718a38ae728dfd477991af2822e08d2f305e47718cef9f7848ce4050e7be41076862b98fad56e91a6b85b89cd97b';
const randomness = 'fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587';

/** The hex string with its character at `index` changed to another hex digit. */
function flip(hex: string, index = hex.length - 1): string {
  return hex.slice(0, index) + (hex[index] === '0' ? '1' : '0') + hex.slice(index + 1);
}

// The v2 vector, computed independently in Python (hashlib/hmac):
//   import hashlib, hmac
//   randomness = bytes.fromhex("fc1873a13f3545aeade8401532ef5519920652eee6b0d2b19ca12643b87b3587")
//   seed = bytes.fromhex("00" * 31 + "2a")
//   ids = ["tkt_01", "tkt_02", "tkt_03", "tkt_04", "tkt_05", "tkt_06", "tkt_ü"]
//   digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()
//   key = hmac.new(randomness, bytes.fromhex(digest) + seed, hashlib.sha256).digest()
//   order = sorted(ids, key=lambda i: hmac.new(key, i.encode(), hashlib.sha256).digest())
//   print(digest, key.hex(), order, hashlib.sha256(seed).hexdigest())
const v2Seed = '00'.repeat(31) + '2a';
const v2Commitment = '0a28e9ffef0073f9a6a674cf57ee77307f38f0f1bebb087888d9011ed0eeefdf';
const v2Ids = ['tkt_01', 'tkt_02', 'tkt_03', 'tkt_04', 'tkt_05', 'tkt_06', 'tkt_ü'];
const v2Digest = 'ed7ee6adf394e141453f6eadf6c23b221bff36b0d99b101aa6ecb0514693a873';
const v2Key = '7d4090054c87df479e973f8090f4c4dc4effaa9a6500807aae645be5da58ced9';
const v2Order = ['tkt_03', 'tkt_05', 'tkt_02', 'tkt_01', 'tkt_ü', 'tkt_04', 'tkt_06'];
// Round 657413 came out at 2023-09-15T11:00:03Z (1692803367 + 657412 × 3).
const roundAt = '2023-09-15T11:00:03.000Z';

describe('the beacon draw (hmac-sha256-drand-v2) checked piece by piece', () => {
  it('the quicknet signature of round 657413 checks against the League of Entropy key', async () => {
    expect(await beaconSignatureVerifies(quicknet, signature)).toBe(true);
  });

  it('a changed signature, a changed round or another key fails the signature check', async () => {
    expect(await beaconSignatureVerifies(quicknet, flip(signature))).toBe(false);
    expect(await beaconSignatureVerifies(quicknet, flip(signature, 20))).toBe(false);
    expect(await beaconSignatureVerifies({ ...quicknet, round: 657414 }, signature)).toBe(false);
    expect(await beaconSignatureVerifies({ ...quicknet, public_key: flip(quicknet.public_key, 50) }, signature)).toBe(false);
    expect(await beaconSignatureVerifies(quicknet, 'not hex')).toBe(false);
  });

  it('the randomness is SHA-256 of the signature', async () => {
    expect(await randomnessMatchesSignature(signature, randomness)).toBe(true);
    expect(await randomnessMatchesSignature(signature, flip(randomness))).toBe(false);
    expect(await randomnessMatchesSignature(flip(signature), randomness)).toBe(false);
  });

  it("the round's time is genesis + (round - 1) × period, and must come after the close", () => {
    expect(roundTime(quicknet).toISOString()).toBe(roundAt);
    expect(roundAfterClose(quicknet, '2023-09-15T10:59:50Z')).toBe(true);
    expect(roundAfterClose(quicknet, roundAt)).toBe(false);
    expect(roundAfterClose(quicknet, '2023-09-15T11:00:10Z')).toBe(false);
    expect(roundAfterClose({ ...quicknet, round: 657400 }, '2023-09-15T10:59:50Z')).toBe(false);
    expect(roundAfterClose(quicknet, 'not a time')).toBe(false);
  });

  it('the seed is the committed one', async () => {
    expect(await seedMatchesCommitment(v2Seed, v2Commitment)).toBe(true);
    expect(await seedMatchesCommitment(flip(v2Seed), v2Commitment)).toBe(false);
  });

  it("the entries' digest is SHA-256 of the sorted ids joined by newlines, and counts them", async () => {
    expect(await entriesDigest([...v2Ids].reverse())).toBe(v2Digest);
    expect(await entriesMatchDigest(v2Ids, 7, v2Digest)).toBe(true);
    expect(await entriesMatchDigest(v2Ids.slice(1), 7, v2Digest)).toBe(false);
    expect(await entriesMatchDigest(v2Ids.slice(1), 6, v2Digest)).toBe(false);
    expect(await entriesMatchDigest([...v2Ids.slice(1), 'tkt_07'], 7, v2Digest)).toBe(false);
    expect(await entriesMatchDigest(v2Ids, 8, v2Digest)).toBe(false);
    expect(await entriesMatchDigest(v2Ids, 7, flip(v2Digest))).toBe(false);
  });

  it('the draw key and the order equal the vector computed in Python', async () => {
    expect(Buffer.from(await drawKey(randomness, v2Digest, v2Seed)).toString('hex')).toBe(v2Key);
    expect(await drawOrderV2(randomness, v2Digest, v2Seed, v2Ids)).toEqual(v2Order);
    // Each input changes the order (seven ids: a collision would need 1 in 5040).
    expect(await drawOrderV2(flip(randomness), v2Digest, v2Seed, v2Ids)).not.toEqual(v2Order);
    expect(await drawOrderV2(randomness, flip(v2Digest), v2Seed, v2Ids)).not.toEqual(v2Order);
    expect(await drawOrderV2(randomness, v2Digest, flip(v2Seed), v2Ids)).not.toEqual(v2Order);
  });
});

describe('recompute of a v2 answer', () => {
  const drawn: FairnessPage = {
    algorithm: 'hmac-sha256-drand-v2',
    commitment: v2Commitment,
    seed: v2Seed,
    lobby_size: 7,
    entries: [...v2Ids].sort(),
    next_cursor: null,
    beacon: { ...quicknet, signature, randomness },
    entries_digest: v2Digest,
    closed_at: '2023-09-15T10:59:50Z',
  };
  const checksOf = async (page: FairnessPage) => {
    const result = await recompute(async () => page);
    return Object.fromEntries((result.beaconDraw?.checks ?? []).map((check) => [check.name, check.passed]));
  };

  it('once drawn: six checks pass and the order and places are the vector', async () => {
    const result = await recompute(async () => drawn);
    expect(result.beaconDraw?.stage).toBe('drawn');
    expect(result.beaconDraw?.checks.map((check) => check.name)).toEqual([
      'signature',
      'randomness',
      'round_time',
      'commitment',
      'entries',
      'order',
    ]);
    expect(result.beaconDraw?.checks.every((check) => check.passed)).toBe(true);
    expect(result.seedMatches).toBe(true);
    expect(result.order).toEqual(v2Order);
    expect(result.placeOf('tkt_03')).toBe(1);
    expect(result.placeOf('tkt_06')).toBe(7);
  });

  it('each altered input fails its own check, and the order with it', async () => {
    const failed = async (page: FairnessPage) =>
      Object.entries(await checksOf(page))
        .filter(([, passed]) => !passed)
        .map(([name]) => name)
        .sort();
    const beacon = drawn.beacon!;
    expect(await failed({ ...drawn, beacon: { ...beacon, round: 657414 } })).toEqual(['order', 'signature']);
    expect(await failed({ ...drawn, beacon: { ...beacon, signature: flip(signature) } })).toEqual([
      'order',
      'randomness',
      'signature',
    ]);
    expect(await failed({ ...drawn, beacon: { ...beacon, randomness: flip(randomness) } })).toEqual([
      'order',
      'randomness',
    ]);
    expect(await failed({ ...drawn, closed_at: '2023-09-15T11:00:05Z' })).toEqual(['order', 'round_time']);
    expect(await failed({ ...drawn, seed: flip(v2Seed) })).toEqual(['commitment', 'order']);
    expect(await failed({ ...drawn, entries_digest: flip(v2Digest) })).toEqual(['entries', 'order']);
    expect(await failed({ ...drawn, lobby_size: 8 })).toEqual(['entries', 'order']);
    expect(await failed({ ...drawn, entries: drawn.entries.slice(1) })).toEqual(['entries', 'order']);
  });

  it('while drawing: the round time and the entries are checked, the rest waits for the round', async () => {
    const drawing: FairnessPage = { ...drawn, seed: null, beacon: { ...quicknet } };
    const result = await recompute(async () => drawing);
    expect(result.beaconDraw?.stage).toBe('drawing');
    expect(await checksOf(drawing)).toEqual({ round_time: true, entries: true });
    expect(result.beaconDraw?.roundTime.toISOString()).toBe(roundAt);
    expect(result.order).toEqual([]);
  });

  it('before the close: nothing to check yet', async () => {
    const lobby: FairnessPage = {
      ...drawn,
      seed: null,
      beacon: { ...quicknet },
      entries_digest: undefined,
      closed_at: undefined,
      entries: [],
      lobby_size: 0,
    };
    const result = await recompute(async () => lobby);
    expect(result.beaconDraw?.stage).toBe('lobby');
    expect(result.beaconDraw?.checks).toEqual([]);
  });
});
