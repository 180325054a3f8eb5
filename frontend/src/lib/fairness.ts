// The lobby's draw recomputed in the browser (shared/API.md "Lobby and a fair start",
// hmac-sha256-v1), so a shopper need not trust the shop: SHA-256(seed) must equal the
// commitment published at creation, and the order is the lobby's ticket ids sorted ascending
// by the raw HMAC-SHA256(key = seed, message = id as UTF-8). Web Crypto only, no library.
import type { FairnessPage } from '../api/types';

export const ALGORITHM = 'hmac-sha256-v1';

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

/** The lobby's order under hmac-sha256-v1: place 1 first. */
export async function drawOrder(seedHex: string, ticketIds: readonly string[]): Promise<string[]> {
  const key = await crypto.subtle.importKey('raw', hexToBytes(seedHex), { name: 'HMAC', hash: 'SHA-256' }, false, [
    'sign',
  ]);
  const encoder = new TextEncoder();
  const signed = await Promise.all(
    ticketIds.map(async (id) => ({ id, digest: new Uint8Array(await crypto.subtle.sign('HMAC', key, encoder.encode(id))) })),
  );
  signed.sort((a, b) => compareBytes(a.digest, b.digest));
  return signed.map((entry) => entry.id);
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

export interface Recomputation {
  algorithm: string;
  commitment: string;
  seed: string | null;
  lobbySize: number;
  entries: number;
  /** null until the seed is revealed at the start. */
  seedMatches: boolean | null;
  order: string[];
  /** The ticket's place in the recomputed order (1 = first); null when it is not an entry. */
  placeOf: (ticketId: string) => number | null;
}

/** Everything the fairness page shows, from the public answer alone. */
export async function recompute(fetchPage: (cursor: string | null) => Promise<FairnessPage>): Promise<Recomputation> {
  const { first, entries } = await allEntries(fetchPage);
  const seed = first.seed;
  const known = first.algorithm === ALGORITHM;
  const seedMatches = seed ? await seedMatchesCommitment(seed, first.commitment) : null;
  const order = seed && known ? await drawOrder(seed, entries) : [];
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
  };
}
