// /sales/:saleId/fairness?ticket=<id>: how the lobby's places were drawn, checked in this
// browser from the public answer alone (lib/fairness.ts): the seed against the commitment,
// the whole order recomputed, and the shopper's own place next to the one their ticket showed.
// A v2 draw (public beacon) lists each check with what it proves, in words a shopper can follow.
import { useEffect, useState, type ReactNode } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import { sales, tickets } from '../api/shop';
import type { Sale, SaleFairness, Ticket } from '../api/types';
import { useAuth } from '../auth/AuthContext';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { recompute, type BeaconDraw, type CheckName, type DrawCheck, type Recomputation } from '../lib/fairness';
import { useTitle } from '../lib/hooks';
import { rememberedTicket } from '../lib/ticketStore';
import { formatDateTime } from '../lib/time';

/** The League of Entropy's quicknet key: the production beacon is named, any other is not. */
const QUICKNET_PUBLIC_KEY =
  '83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a';
/** While the draw waits, the sale is read this often to see the round arrive. */
const WAIT_POLL_MS = 3000;
/** A lobby's page waits for the start, but setTimeout overflows past 24.8 days: look hourly. */
const LONGEST_WAIT_MS = 3_600_000;

/** The place the ticket showed: the first place this browser saw (a queued ticket's position
 *  before anyone ahead was served), else its position now if it is still queued. */
export function shownPlace(ticket: Ticket | undefined, ticketId: string): number | null {
  const remembered = rememberedTicket(ticketId)?.firstPosition ?? null;
  if (remembered !== null) return remembered;
  return ticket?.status === 'queued' ? ticket.position : null;
}

/** To the second: the round and the close are seconds apart. */
function formatMoment(value: string | Date | null): string {
  if (value === null) return '';
  const date = typeof value === 'string' ? new Date(value) : value;
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** Has the sale's fairness moved past the stage the page shows (the close, or the round out)? */
function movedOn(draw: BeaconDraw, fairness: SaleFairness | null | undefined): boolean {
  if (!fairness) return false;
  if (draw.stage === 'lobby') return Boolean(fairness.closed_at);
  return Boolean(fairness.beacon?.signature);
}

type OwnPlace = { computed: number | null; shown: number | null };

function beaconName(draw: BeaconDraw): string {
  return draw.beacon.public_key.toLowerCase() === QUICKNET_PUBLIC_KEY
    ? "the League of Entropy's public key"
    : "the beacon's public key (shown below)";
}

/** One plain sentence per check: what its pass proves, or what its failure means. */
function checkSentence(check: DrawCheck, draw: BeaconDraw, result: Recomputation, own: OwnPlace): ReactNode {
  const round = draw.beacon.round;
  const roundAt = formatMoment(draw.roundTime);
  const closedAt = formatMoment(draw.closedAt);
  switch (check.name) {
    case 'signature':
      return check.passed
        ? `The randomness comes from the public drand beacon round ${round}: its signature checks against ${beaconName(draw)}, so neither the shop nor anyone else chose it.`
        : `The signature given for drand round ${round} does not check against ${beaconName(draw)}: nothing shows this randomness came from the beacon.`;
    case 'randomness':
      return check.passed
        ? "The random number used is the one the beacon's signature gives (its SHA-256), so it was not swapped afterwards."
        : "The random number used is not the one the beacon's signature gives: it was changed.";
    case 'round_time': {
      const moved = draw.beacon.round_moved_from
        ? ` The sale announced round ${draw.beacon.round_moved_from}, but the close was recorded too late for it, so the next round due after the close is used.`
        : '';
      if (check.passed && draw.stage !== 'drawn') {
        return `Round ${round} is due at ${roundAt}, after the entries closed at ${closedAt}: nobody can know it while entries could still change.${moved}`;
      }
      return check.passed
        ? `Round ${round} was produced at ${roundAt}, after the entries closed at ${closedAt}: nobody could know it while entries could still change.${moved}`
        : `Round ${round} was produced at ${roundAt}, not after the entries closed at ${closedAt}: its randomness could be known while entries could still change.${moved}`;
    }
    case 'commitment':
      return check.passed
        ? "The shop's own seed was committed before the sale: SHA-256(seed) equals the commitment published at creation."
        : 'The revealed seed is not the one committed to at creation: SHA-256(seed) differs from the commitment.';
    case 'entries':
      return check.passed
        ? `The list of entries was fixed when the lobby closed: the published fingerprint matches these ${result.entries} entries.`
        : `The ${result.entries} entries read here do not match what was fixed when the lobby closed (the fingerprint, or the count of ${result.lobbySize}).`;
    case 'order': {
      // Its inputs failing is one reason; the ticket's own place (withOwnPlace) is the other.
      const inputsPassed = draw.checks.find((each) => each.name === 'order')?.passed ?? false;
      if (!inputsPassed) return 'The order cannot be trusted: one of its inputs above failed its check.';
      const redone = `This browser redid the draw from the beacon's randomness, the entries and the seed: all ${result.order.length} places follow from them alone.`;
      if (own.computed === null || own.shown === null) return redone;
      if (own.shown === own.computed) return `${redone} Your ticket is place ${own.computed}, as it showed.`;
      if (own.shown < own.computed) {
        return `${redone} Your ticket is place ${own.computed}; it showed ${own.shown} because ${own.computed - own.shown} ahead of you had already been served.`;
      }
      return `${redone} But your ticket showed place ${own.shown}, behind the place ${own.computed} drawn here.`;
    }
  }
}

/** Your ticket showing a place behind the drawn one fails the order check too. */
function withOwnPlace(checks: DrawCheck[], own: OwnPlace): DrawCheck[] {
  const behind = own.computed !== null && own.shown !== null && own.shown > own.computed;
  return checks.map((check) => (check.name === 'order' && behind ? { ...check, passed: false } : check));
}

const CHECK_TITLES: Record<CheckName, string> = {
  signature: 'Beacon signature',
  randomness: 'Randomness from the signature',
  round_time: 'Round after the close',
  commitment: 'Seed committed in advance',
  entries: 'Entries fixed at the close',
  order: 'Order recomputed',
};

function BeaconChecks({ draw, result, own }: { draw: BeaconDraw; result: Recomputation; own: OwnPlace }) {
  const checks = withOwnPlace(draw.checks, own);
  const failed = checks.filter((check) => !check.passed).length;
  return (
    <>
      {draw.stage === 'drawn' ? (
        <p className="notice" data-testid="fairness-summary">
          {failed === 0 ? (
            <span className="verdict-ok">Every check passed: nobody could choose or foresee the order.</span>
          ) : (
            <span className="verdict-bad">
              {failed} of {checks.length} checks failed: this draw cannot be shown to be fair.
            </span>
          )}
        </p>
      ) : null}
      <ul className="list" data-testid="fairness-checks">
        {checks.map((check) => (
          <li key={check.name} data-testid={`fairness-check-${check.name}`} data-passed={String(check.passed)}>
            <p>
              <span className={check.passed ? 'verdict-ok' : 'verdict-bad'} data-testid={`fairness-check-${check.name}-mark`}>
                <span aria-hidden="true">{check.passed ? '✓' : '✗'}</span> {check.passed ? 'Passed' : 'Failed'}
              </span>{' '}
              <strong>{CHECK_TITLES[check.name]}.</strong> {checkSentence(check, draw, result, own)}
            </p>
          </li>
        ))}
      </ul>
    </>
  );
}

/** Where a v2 draw stands, in words: what will happen, what it waits for, or how it was checked. */
function BeaconStage({ draw, result, startsAt }: { draw: BeaconDraw; result: Recomputation; startsAt: string | null }) {
  const round = draw.beacon.round;
  const due = formatMoment(draw.roundTime);
  if (draw.stage === 'lobby') {
    return (
      <p className="notice" data-testid="fairness-stage">
        The lobby is open{startsAt ? ` until the start at ${formatMoment(startsAt)}` : ''}. Then it closes, and the
        list of entries is fixed and its fingerprint published. The places are drawn with drand round {round}, due at{' '}
        {due}: a random number nobody, not even the shop, can know before then. Each check will appear here.
      </p>
    );
  }
  if (draw.stage === 'drawing') {
    return (
      <p className="notice" data-testid="fairness-stage">
        The lobby closed at {formatMoment(draw.closedAt)} with {result.lobbySize}{' '}
        {result.lobbySize === 1 ? 'entry' : 'entries'}. The draw waits for drand round {round}, due at {due}; the
        places are drawn as soon as it is out, and this page then checks them.
      </p>
    );
  }
  return null;
}

export function FairnessPage() {
  const { saleId = '' } = useParams();
  const [search] = useSearchParams();
  const ticketId = search.get('ticket') ?? '';
  const { user } = useAuth();
  const [result, setResult] = useState<Recomputation | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [ticket, setTicket] = useState<Ticket | undefined>(undefined);
  const [sale, setSale] = useState<Sale | null>(null);
  // Bumped when the draw moves on (the close, the round out): the checks are redone.
  const [revision, setRevision] = useState(0);
  useTitle('How the places were drawn');

  useEffect(() => {
    let current = true;
    recompute((cursor) => sales.fairness(saleId, cursor)).then(
      (done) => current && setResult(done),
      (caught) => current && setError(caught),
    );
    sales.get(saleId).then(
      (found) => current && setSale(found),
      () => undefined, // the times are a nicety; the draw above reports its own errors
    );
    return () => {
      current = false;
    };
  }, [saleId, revision]);

  // A v2 draw still waiting: read the sale (one small answer) until the close or the round is out.
  const draw = result?.beaconDraw ?? null;
  const startsAt = sale?.starts_at ?? null;
  useEffect(() => {
    if (!draw || draw.stage === 'drawn') return undefined;
    let current = true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const untilStart = draw.stage === 'lobby' && startsAt ? Date.parse(startsAt) - Date.now() : 0;
    const poll = () => {
      sales.get(saleId).then(
        (found) => {
          if (!current) return;
          if (movedOn(draw, found.fairness)) setRevision((n) => n + 1);
          else timer = setTimeout(poll, WAIT_POLL_MS);
        },
        () => current && (timer = setTimeout(poll, WAIT_POLL_MS)),
      );
    };
    timer = setTimeout(poll, Math.min(LONGEST_WAIT_MS, Math.max(WAIT_POLL_MS, untilStart || 0)));
    return () => {
      current = false;
      clearTimeout(timer);
    };
  }, [draw, saleId, startsAt]);

  useEffect(() => {
    if (!ticketId || !user) return undefined;
    let current = true;
    tickets.get(ticketId).then(
      (found) => current && setTicket(found),
      () => undefined, // not the caller's ticket: the page still shows the draw
    );
    return () => {
      current = false;
    };
  }, [ticketId, user, revision]);

  if (!result) {
    return (
      <section className="page">
        <h1>How the places were drawn</h1>
        {error ? <ErrorAlert error={error} /> : <Loading label="Checking the draw…" />}
      </section>
    );
  }

  const computed = ticketId ? result.placeOf(ticketId) : null;
  const shown = ticketId ? shownPlace(ticket, ticketId) : null;
  const inLobby = ticketId ? result.seed === null || computed !== null : false;
  const revealedWhen = draw
    ? `revealed once drand round ${draw.beacon.round} is out`
    : `revealed at the start${startsAt ? ` (${formatDateTime(startsAt)})` : ''}`;
  return (
    <section className="page fairness-page" data-testid="fairness-page">
      <h1>How the places were drawn</h1>
      {draw ? (
        <p>
          Everyone who joined the lobby before the start gets a random place. Nobody can choose the order, not even the
          shop: it mixes three things, each checked below in your browser. A secret seed the shop committed to when it
          created the sale; the list of entries, fixed when the lobby closed; and a random number from the public drand
          beacon that did not exist until after the lobby closed. From these the ids are shuffled with HMAC-SHA256,
          place 1 first.
        </p>
      ) : (
        <p>
          Everyone who joined the lobby before the start got a random place at the start. The shop chose a secret seed
          when it created the sale and published its fingerprint (the commitment) before anyone could join, so it could
          not pick the order afterwards. After the start the seed is revealed, and this page redoes the draw in your
          browser: each ticket id is signed with HMAC-SHA256 under the seed, and the ids sorted by their signatures give
          the order, place 1 first.
        </p>
      )}
      {draw ? (
        <>
          <BeaconStage draw={draw} result={result} startsAt={startsAt} />
          <BeaconChecks draw={draw} result={result} own={{ computed, shown }} />
        </>
      ) : null}
      <dl className="fairness-table">
        <dt>Algorithm</dt>
        <dd data-testid="fairness-algorithm">{result.algorithm}</dd>
        <dt>Commitment</dt>
        <dd data-testid="fairness-commitment">{result.commitment}</dd>
        <dt>Seed</dt>
        <dd data-testid="fairness-seed">{result.seed ?? revealedWhen}</dd>
        <dt>SHA-256(seed) = commitment</dt>
        <dd data-testid="fairness-seed-check">
          {result.seedMatches === null ? (
            'checked once the seed is revealed'
          ) : result.seedMatches ? (
            <span className="verdict-ok">yes</span>
          ) : (
            <span className="verdict-bad">NO: the seed is not the one committed to</span>
          )}
        </dd>
        <dt>Shoppers in the lobby</dt>
        <dd data-testid="fairness-lobby-size">
          {result.lobbySize} ({result.entries} entries read)
        </dd>
        {draw ? (
          <>
            <dt>Entries closed at</dt>
            <dd data-testid="fairness-closed-at">{draw.closedAt ? formatMoment(draw.closedAt) : 'at the start'}</dd>
            <dt>Entries fingerprint</dt>
            <dd data-testid="fairness-entries-digest">{draw.entriesDigest ?? 'published when the lobby closes'}</dd>
            <dt>Beacon round</dt>
            <dd data-testid="fairness-round">
              {draw.beacon.round} (due at {formatMoment(draw.roundTime)})
              {draw.beacon.round_moved_from ? `, instead of round ${draw.beacon.round_moved_from} announced at creation` : ''}
            </dd>
            <dt>Beacon chain</dt>
            <dd data-testid="fairness-chain-hash">{draw.beacon.chain_hash}</dd>
            <dt>Beacon public key</dt>
            <dd data-testid="fairness-public-key">{draw.beacon.public_key}</dd>
            <dt>Round signature</dt>
            <dd data-testid="fairness-signature">{draw.beacon.signature ?? 'when the round is out'}</dd>
            <dt>Randomness</dt>
            <dd data-testid="fairness-randomness">{draw.beacon.randomness ?? 'when the round is out'}</dd>
          </>
        ) : null}
      </dl>
      {ticketId ? (
        <>
          <h2>Your entry</h2>
          <dl className="fairness-table" data-testid="fairness-own-entry">
            <dt>Your ticket</dt>
            <dd data-testid="fairness-ticket-id">{ticketId}</dd>
            <dt>Place computed here</dt>
            <dd data-testid="fairness-computed-place">
              {result.seed === null
                ? draw
                  ? 'after the draw'
                  : 'after the start'
                : computed !== null
                  ? `${computed} of ${result.order.length}`
                  : 'not in the lobby (joined after the start)'}
            </dd>
            <dt>Place your ticket showed</dt>
            <dd data-testid="fairness-shown-place">{shown ?? 'not seen in this browser'}</dd>
            <dt>Verdict</dt>
            <dd data-testid="fairness-verdict">
              {computed !== null && shown !== null && result.seedMatches ? (
                computed === shown ? (
                  <span className="verdict-ok">matches</span>
                ) : shown < computed ? (
                  // A shown place is the drawn place minus those already served, never more.
                  `consistent: ${computed - shown} ahead of you had already been served when this browser first saw your place`
                ) : (
                  <span className="verdict-bad">differs: your ticket showed a place behind the drawn one</span>
                )
              ) : result.seedMatches === false ? (
                <span className="verdict-bad">the seed does not match the commitment</span>
              ) : inLobby ? (
                'nothing to compare yet'
              ) : (
                '—'
              )}
            </dd>
          </dl>
          <p>
            <Link to={`/tickets/${encodeURIComponent(ticketId)}`}>Back to your ticket</Link>
          </p>
        </>
      ) : null}
      <p>
        <Link to={`/sales/${encodeURIComponent(saleId)}`}>Back to the sale</Link> ·{' '}
        <a href={`/api/sales/${encodeURIComponent(saleId)}/fairness`}>The public answer (JSON)</a>
      </p>
    </section>
  );
}
