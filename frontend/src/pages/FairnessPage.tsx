// /sales/:saleId/fairness?ticket=<id>: how the lobby's places were drawn, checked in this
// browser from the public answer alone (lib/fairness.ts): the seed against the commitment,
// the whole order recomputed, and the shopper's own place next to the one their ticket showed.
import { useEffect, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import { sales, tickets } from '../api/shop';
import type { Ticket } from '../api/types';
import { useAuth } from '../auth/AuthContext';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { recompute, type Recomputation } from '../lib/fairness';
import { useTitle } from '../lib/hooks';
import { rememberedTicket } from '../lib/ticketStore';
import { formatDateTime } from '../lib/time';

/** The place the ticket showed: the first place this browser saw (a queued ticket's position
 *  before anyone ahead was served), else its position now if it is still queued. */
export function shownPlace(ticket: Ticket | undefined, ticketId: string): number | null {
  const remembered = rememberedTicket(ticketId)?.firstPosition ?? null;
  if (remembered !== null) return remembered;
  return ticket?.status === 'queued' ? ticket.position : null;
}

export function FairnessPage() {
  const { saleId = '' } = useParams();
  const [search] = useSearchParams();
  const ticketId = search.get('ticket') ?? '';
  const { user } = useAuth();
  const [result, setResult] = useState<Recomputation | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [ticket, setTicket] = useState<Ticket | undefined>(undefined);
  const [startsAt, setStartsAt] = useState<string | null>(null);
  useTitle('How the places were drawn');

  useEffect(() => {
    let current = true;
    setResult(null);
    recompute((cursor) => sales.fairness(saleId, cursor)).then(
      (done) => current && setResult(done),
      (caught) => current && setError(caught),
    );
    sales.get(saleId).then(
      (sale) => current && setStartsAt(sale.starts_at),
      () => undefined, // the time is a nicety; the draw above reports its own errors
    );
    return () => {
      current = false;
    };
  }, [saleId]);

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
  }, [ticketId, user]);

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
  return (
    <section className="page fairness-page" data-testid="fairness-page">
      <h1>How the places were drawn</h1>
      <p>
        Everyone who joined the lobby before the start got a random place at the start. The shop chose a secret seed
        when it created the sale and published its fingerprint (the commitment) before anyone could join, so it could
        not pick the order afterwards. After the start the seed is revealed, and this page redoes the draw in your
        browser: each ticket id is signed with HMAC-SHA256 under the seed, and the ids sorted by their signatures give
        the order, place 1 first.
      </p>
      <dl className="fairness-table">
        <dt>Algorithm</dt>
        <dd data-testid="fairness-algorithm">{result.algorithm}</dd>
        <dt>Commitment</dt>
        <dd data-testid="fairness-commitment">{result.commitment}</dd>
        <dt>Seed</dt>
        <dd data-testid="fairness-seed">
          {result.seed ?? `revealed at the start${startsAt ? ` (${formatDateTime(startsAt)})` : ''}`}
        </dd>
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
                ? 'after the start'
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
