// The lobby's draw recomputed in the browser, so a shopper need not trust the shop.
// v1 (shared/API.md "Lobby and a fair start", hmac-sha256-v1): SHA-256(seed) must equal the
// commitment published at creation, and the order is the lobby's ticket ids sorted ascending
// by the raw HMAC-SHA256(key = seed, message = id as UTF-8).
// v2 ("Verifiable randomness from a public beacon", hmac-sha256-drand-v2): the key is
// HMAC-SHA256(key = drand randomness, message = entries digest ‖ seed), so the shop cannot pick
// the order either; each input is checked on its own (the beacon's BLS signature, the
// randomness, the round's time after the close, the commitment, the entries' digest).
// Hashes and HMACs use Web Crypto; only the BLS pairing check needs a library (@noble/curves,
// loaded when a v2 signature is checked).
import type { DrandBeacon, FairnessPage } from '../api/types';

export const ALGORITHM = 'hmac-sha256-v1';
export const ALGORITHM_V2 = 'hmac-sha256-drand-v2';
/** drand's bls-unchained-g1-rfc9380 scheme (quicknet): hash-to-G1 with this tag (RFC 9380). */
export const DRAND_DST = 'BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_';

export function hexToBytes(hex: string): Uint8Array<ArrayBuffer> {
  if (hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) throw new Error('not a hex string');
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

export function bytesToHex(bytes: ArrayBuffer | Uint8Array): string {
  return Array.from(bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes), (b) =>
    b.toString(16).padStart(2, '0'),
  ).join('');
}

/** Byte-wise comparison of two digests (what "compare the raw digests" means). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i += 1) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** hex(SHA-256(seed)) equals the commitment. */
export async function seedMatchesCommitment(seedHex: string, commitment: string): Promise<boolean> {
  const digest = await crypto.subtle.digest('SHA-256', hexToBytes(seedHex));
  return bytesToHex(digest) === commitment.toLowerCase();
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array<ArrayBuffer>> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
}

async function hmacKey(key: Uint8Array<ArrayBuffer>): Promise<CryptoKey> {
  return crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
}

/** The ids sorted ascending by the raw HMAC-SHA256(key, id as UTF-8): place 1 first. */
async function orderByHmac(key: Uint8Array<ArrayBuffer>, ticketIds: readonly string[]): Promise<string[]> {
  const imported = await hmacKey(key);
  const encoder = new TextEncoder();
  const signed = await Promise.all(
    ticketIds.map(async (id) => ({
      id,
      digest: new Uint8Array(await crypto.subtle.sign('HMAC', imported, encoder.encode(id))),
    })),
  );
  signed.sort((a, b) => compareBytes(a.digest, b.digest));
  return signed.map((entry) => entry.id);
}

/** The lobby's order under hmac-sha256-v1: place 1 first. */
export async function drawOrder(seedHex: string, ticketIds: readonly string[]): Promise<string[]> {
  return orderByHmac(hexToBytes(seedHex), ticketIds);
}

// ------------------------------------------------------------------ v2: hmac-sha256-drand-v2

/** When a drand round is produced: genesis_time + (round - 1) × period. */
export function roundTime(beacon: Pick<DrandBeacon, 'genesis_time' | 'period_seconds' | 'round'>): Date {
  return new Date((beacon.genesis_time + (beacon.round - 1) * beacon.period_seconds) * 1000);
}

/** What drand signs for a round in the unchained schemes: SHA-256(round as 8-byte big-endian). */
export async function roundMessage(round: number): Promise<Uint8Array<ArrayBuffer>> {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(round));
  return sha256(bytes);
}

/** (a) The round's BLS signature (G1) checks against the beacon's public key (G2) for that
 *  round. A malformed key or signature fails the check rather than throwing. */
export async function beaconSignatureVerifies(
  beacon: Pick<DrandBeacon, 'public_key' | 'round'>,
  signatureHex: string,
): Promise<boolean> {
  const { bls12_381 } = await import('@noble/curves/bls12-381.js');
  const scheme = bls12_381.shortSignatures;
  try {
    const signature = scheme.Signature.fromBytes(hexToBytes(signatureHex));
    const publicKey = bls12_381.G2.Point.fromBytes(hexToBytes(beacon.public_key));
    // The tag is passed, not assumed: noble's default for G1 could change between versions.
    const message = scheme.hash(await roundMessage(beacon.round), DRAND_DST);
    return scheme.verify(signature, message, publicKey);
  } catch {
    return false; // not a point on the curve, wrong length, not hex: not a valid signature
  }
}

/** (b) The randomness is SHA-256 of the signature's bytes. */
export async function randomnessMatchesSignature(signatureHex: string, randomnessHex: string): Promise<boolean> {
  return bytesToHex(await sha256(hexToBytes(signatureHex))) === randomnessHex.toLowerCase();
}

/** (c) The round was produced after the lobby closed, so nobody knew it while entries changed. */
export function roundAfterClose(beacon: Pick<DrandBeacon, 'genesis_time' | 'period_seconds' | 'round'>, closedAt: string): boolean {
  const closed = Date.parse(closedAt);
  return !Number.isNaN(closed) && roundTime(beacon).getTime() > closed;
}

/** Ascending as the server sorts strings (by code point, which is UTF-8 byte order). */
function sortedIds(ticketIds: readonly string[]): string[] {
  const encoder = new TextEncoder();
  return [...ticketIds]
    .map((id) => ({ id, bytes: encoder.encode(id) }))
    .sort((a, b) => compareBytes(a.bytes, b.bytes))
    .map((entry) => entry.id);
}

/** hex SHA-256 of the ids sorted ascending and joined by "\n". */
export async function entriesDigest(ticketIds: readonly string[]): Promise<string> {
  return bytesToHex(await sha256(new TextEncoder().encode(sortedIds(ticketIds).join('\n'))));
}

/** (e) The entries read are the ones fixed at the close: their digest is the published one
 *  and there are as many as the lobby had. */
export async function entriesMatchDigest(
  ticketIds: readonly string[],
  lobbySize: number,
  digestHex: string,
): Promise<boolean> {
  if (ticketIds.length !== lobbySize || new Set(ticketIds).size !== ticketIds.length) return false;
  return (await entriesDigest(ticketIds)) === digestHex.toLowerCase();
}

/** HMAC-SHA256(key = randomness bytes, message = entries digest bytes ‖ seed bytes). */
export async function drawKey(randomnessHex: string, digestHex: string, seedHex: string): Promise<Uint8Array<ArrayBuffer>> {
  const digest = hexToBytes(digestHex);
  const seed = hexToBytes(seedHex);
  const message = new Uint8Array(digest.length + seed.length);
  message.set(digest);
  message.set(seed, digest.length);
  return new Uint8Array(await crypto.subtle.sign('HMAC', await hmacKey(hexToBytes(randomnessHex)), message));
}

/** (f) The lobby's order under hmac-sha256-drand-v2: place 1 first. */
export async function drawOrderV2(
  randomnessHex: string,
  digestHex: string,
  seedHex: string,
  ticketIds: readonly string[],
): Promise<string[]> {
  return orderByHmac(await drawKey(randomnessHex, digestHex, seedHex), ticketIds);
}

/** Every entry of the fairness answer, following next_cursor page after page. */
export async function allEntries(
  fetchPage: (cursor: string | null) => Promise<FairnessPage>,
): Promise<{ first: FairnessPage; entries: string[] }> {
  const first = await fetchPage(null);
  const entries = [...first.entries];
  let cursor = first.next_cursor;
  while (cursor) {
    const page = await fetchPage(cursor);
    entries.push(...page.entries);
    cursor = page.next_cursor;
  }
  return { first, entries };
}

/** The v2 checks, in the order the fairness page lists them. */
export type CheckName = 'signature' | 'randomness' | 'round_time' | 'commitment' | 'entries' | 'order';

export interface DrawCheck {
  name: CheckName;
  passed: boolean;
}

/** A v2 draw's progress: the lobby open, closed and waiting for the round, or drawn. */
export type BeaconStage = 'lobby' | 'drawing' | 'drawn';

export interface BeaconDraw {
  stage: BeaconStage;
  beacon: DrandBeacon;
  /** When the beacon's round is (or was) produced. */
  roundTime: Date;
  closedAt: string | null;
  entriesDigest: string | null;
  /** The checks whose inputs are published so far (none before the close; the entries and
   *  the round's time while drawing; all six once drawn). */
  checks: DrawCheck[];
}

export interface Recomputation {
  algorithm: string;
  commitment: string;
  seed: string | null;
  lobbySize: number;
  entries: number;
  /** null until the seed is revealed (v1: at the start; v2: once the beacon round is out). */
  seedMatches: boolean | null;
  order: string[];
  /** The ticket's place in the recomputed order (1 = first); null when it is not an entry. */
  placeOf: (ticketId: string) => number | null;
  /** hmac-sha256-drand-v2 only. */
  beaconDraw: BeaconDraw | null;
}

/** The v2 checks on the public answer; the order is computed once its three inputs are out. */
async function checkBeaconDraw(
  first: FairnessPage,
  beacon: DrandBeacon,
  entries: readonly string[],
  seedMatches: boolean | null,
): Promise<{ draw: BeaconDraw; order: string[] }> {
  const closedAt = first.closed_at ?? null;
  const digest = first.entries_digest ?? null;
  const { signature, randomness } = beacon;
  const stage: BeaconStage =
    closedAt === null || digest === null ? 'lobby' : signature && randomness && first.seed ? 'drawn' : 'drawing';
  const checks: DrawCheck[] = [];
  let order: string[] = [];
  if (stage === 'drawn' && signature && randomness && first.seed && digest) {
    checks.push({ name: 'signature', passed: await beaconSignatureVerifies(beacon, signature) });
    checks.push({ name: 'randomness', passed: await randomnessMatchesSignature(signature, randomness) });
  }
  if (closedAt !== null && digest !== null) {
    checks.push({ name: 'round_time', passed: roundAfterClose(beacon, closedAt) });
  }
  if (stage === 'drawn' && seedMatches !== null) checks.push({ name: 'commitment', passed: seedMatches });
  if (digest !== null) {
    checks.push({ name: 'entries', passed: await entriesMatchDigest(entries, first.lobby_size, digest) });
  }
  if (stage === 'drawn' && randomness && first.seed && digest) {
    order = await drawOrderV2(randomness, digest, first.seed, entries);
    // The order is only as good as its inputs: it passes when each of them checked out.
    const inputsOk = checks.every((check) => check.passed);
    checks.push({ name: 'order', passed: inputsOk && order.length === first.lobby_size });
  }
  return {
    draw: { stage, beacon, roundTime: roundTime(beacon), closedAt, entriesDigest: digest, checks },
    order,
  };
}

/** Everything the fairness page shows, from the public answer alone. */
export async function recompute(fetchPage: (cursor: string | null) => Promise<FairnessPage>): Promise<Recomputation> {
  const { first, entries } = await allEntries(fetchPage);
  const seed = first.seed;
  const seedMatches = seed ? await seedMatchesCommitment(seed, first.commitment) : null;
  let order: string[] = [];
  let beaconDraw: BeaconDraw | null = null;
  if (first.algorithm === ALGORITHM_V2 && first.beacon) {
    ({ draw: beaconDraw, order } = await checkBeaconDraw(first, first.beacon, entries, seedMatches));
  } else if (seed && first.algorithm === ALGORITHM) {
    order = await drawOrder(seed, entries);
  }
  const places = new Map(order.map((id, index) => [id, index + 1]));
  return {
    algorithm: first.algorithm,
    commitment: first.commitment,
    seed,
    lobbySize: first.lobby_size,
    entries: entries.length,
    seedMatches,
    order,
    placeOf: (ticketId) => places.get(ticketId) ?? null,
    beaconDraw,
  };
}
