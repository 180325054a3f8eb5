// The shop's clock: the browser's, corrected when the server's Date header says it is far off,
// so that a countdown to a sale's start does not open the Buy button early on a fast laptop.

// A Date header has one-second resolution; smaller differences are noise, not skew.
const SKEW_THRESHOLD_MS = 2000;
let offsetMs = 0;

export function now(): number {
  return Date.now() + offsetMs;
}

export function observeServerDate(header: string | null | undefined, receivedAt = Date.now()): void {
  if (!header) return;
  const server = Date.parse(header);
  if (Number.isNaN(server)) return;
  const skew = server - receivedAt;
  offsetMs = Math.abs(skew) > SKEW_THRESHOLD_MS ? skew : 0;
}

export function resetClock(): void {
  offsetMs = 0;
}
