// A sale's proof-of-work entry (entry.challenge): the challenge is fetched and solved in the
// background, by the altcha widget's own SHA-256 Web Workers, while the shopper reads the sale
// page or waits in the lobby, so nobody waits for it when the sale opens. The server speaks
// ALTCHA's first protocol (SHA-256 of salt + number, HMAC-signed); the widget solves such a
// challenge the way done here: as a key prefix over the salt's bytes, counting in decimal.
import { useCallback, useEffect, useRef, useState } from 'react';
import { solveChallengeWorkers } from 'altcha/lib';
import ShaWorker from 'altcha/workers/sha?worker';

/** GET /api/sales/<id>/challenge. */
export interface AltchaChallenge {
  algorithm: string;
  challenge: string;
  maxnumber: number;
  salt: string;
  signature: string;
}

/** A solved challenge: the admission's `altcha` payload, and when it stops being accepted. */
export interface SolvedChallenge {
  payload: string;
  expiresAt: number | null;
}

function hex(text: string): string {
  return Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** When the challenge expires (ms since the epoch), from its salt's `expires` (seconds). */
export function challengeExpiry(challenge: AltchaChallenge): number | null {
  const query = challenge.salt.split('?')[1] ?? '';
  const expires = new URLSearchParams(query).get('expires');
  return expires && /^\d+$/.test(expires) ? Number(expires) * 1000 : null;
}

/** The payload the server checks: the challenge's fields and the number that solves it. */
export function payloadFor(challenge: AltchaChallenge, number: number, took = 0): string {
  return btoa(
    JSON.stringify({
      algorithm: challenge.algorithm,
      challenge: challenge.challenge,
      number,
      salt: challenge.salt,
      signature: challenge.signature,
      took,
    }),
  );
}

/** Solve in Web Workers (from the shop's own origin: no CSP change); null when aborted. */
export async function solveChallenge(
  challenge: AltchaChallenge,
  controller = new AbortController(),
): Promise<SolvedChallenge | null> {
  const started = performance.now();
  const solution = await solveChallengeWorkers({
    challenge: {
      parameters: {
        algorithm: challenge.algorithm,
        nonce: hex(challenge.salt),
        salt: '',
        cost: 1,
        keyLength: 32,
        keyPrefix: challenge.challenge,
      },
      signature: challenge.signature,
    },
    concurrency: Math.min(4, navigator.hardwareConcurrency || 1),
    controller,
    counterMode: 'string',
    createWorker: () => new ShaWorker(),
  });
  if (!solution) return null;
  return {
    payload: payloadFor(challenge, solution.counter, Math.round(performance.now() - started)),
    expiresAt: challengeExpiry(challenge),
  };
}

/**
 * For a sale that asks for a challenge: one solved and ready before the shopper presses Buy,
 * fetched with `fetchChallenge` and solved again when it nears its expiry or was spent.
 * `take()` hands the ready payload over (waiting for it if still being solved) and starts the
 * next one; `take(true)` solves a fresh one first (the server refused the last).
 */
export function useEntryChallenge(enabled: boolean, fetchChallenge: () => Promise<AltchaChallenge>) {
  const pending = useRef<{ promise: Promise<SolvedChallenge | null>; controller: AbortController } | null>(null);
  const [ready, setReady] = useState(false);
  const [generation, setGeneration] = useState(0);
  const fetcher = useRef(fetchChallenge);
  fetcher.current = fetchChallenge;

  const start = useCallback(() => {
    pending.current?.controller.abort();
    const controller = new AbortController();
    const promise = fetcher
      .current()
      .then((challenge) => solveChallenge(challenge, controller))
      .catch(() => null);
    const current = { promise, controller };
    pending.current = current;
    setReady(false);
    promise.then((solved) => {
      if (pending.current === current && solved) setReady(true);
    });
    return current;
  }, []);

  useEffect(() => {
    if (!enabled) return;
    const current = start();
    let timer: ReturnType<typeof setTimeout> | undefined;
    current.promise.then((solved) => {
      if (current.controller.signal.aborted || !solved || solved.expiresAt === null) return;
      // A minute before it expires, solve a fresh one (a lobby may outlast a challenge).
      timer = setTimeout(() => setGeneration((g) => g + 1), Math.max(0, solved.expiresAt - Date.now() - 60_000));
    });
    return () => {
      if (timer) clearTimeout(timer);
      current.controller.abort();
    };
  }, [enabled, generation, start]);

  const take = useCallback(
    async (fresh = false): Promise<string | null> => {
      const current = !fresh && pending.current ? pending.current : start();
      const solved = await current.promise;
      if (pending.current === current) pending.current = null;
      setGeneration((g) => g + 1); // a solution is accepted once: get the next one going
      return solved && (solved.expiresAt === null || solved.expiresAt > Date.now()) ? solved.payload : null;
    },
    [start],
  );
  return { ready, take };
}
