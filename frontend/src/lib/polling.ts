// Live ticket updates: the ticket's event stream (Server-Sent Events, opened with its
// `stream_token`), and polling when a stream cannot be had. Polling respects the server's pace:
// the next GET waits the ticket's `poll_after_ms` (never less), and errors back off
// exponentially so a struggling API is not hammered.
import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from '../api/client';
import { sales, tickets } from '../api/shop';
import { isSettledTicket, type Sale, type Ticket } from '../api/types';

export const DEFAULT_POLL_MS = 2000;
export const MAX_BACKOFF_MS = 30_000;
export const SALE_REFRESH_MS = 5000;
/** A stream that errors this many times in a row without an event gives way to polling. */
export const STREAM_MAX_ERRORS = 3;

/**
 * The ticket's event stream URL. The token is the ticket's own, read-only, and valid for an
 * hour at most: every ticket answer (a poll, each stream event) carries a fresh one.
 */
export function ticketStreamUrl(ticket: Ticket): string {
  return `/api/tickets/${encodeURIComponent(ticket.id)}/events?stream_token=${encodeURIComponent(ticket.stream_token ?? '')}`;
}

function canStream(ticket: Ticket): boolean {
  return typeof EventSource !== 'undefined' && Boolean(ticket.stream_token) && !isSettledTicket(ticket);
}

/**
 * How long to wait before the next poll: the server's `poll_after_ms` (or a default),
 * doubled for each consecutive failure up to a cap, never less than a Retry-After.
 */
export function nextPollDelay(
  pollAfterMs: number | null | undefined,
  failures: number,
  retryAfterSeconds: number | null = null,
  random: () => number = Math.random,
): number {
  const base = pollAfterMs && pollAfterMs > 0 ? pollAfterMs : DEFAULT_POLL_MS;
  if (failures <= 0) return base;
  const backoff = Math.min(MAX_BACKOFF_MS, base * 2 ** failures);
  // Up to 20% jitter on errors so that shoppers do not all come back in the same instant.
  const jittered = Math.max(base, Math.round(backoff * (1 + 0.2 * random())));
  return Math.max(jittered, (retryAfterSeconds ?? 0) * 1000);
}

export interface TicketPoll {
  ticket: Ticket | undefined;
  /** The last polling error while it lasts (cleared by the next success). */
  error: unknown;
  /** The ticket does not exist or is someone else's (404). */
  notFound: boolean;
  /** When the next poll is due (ms since epoch), for "retrying in …" notes. */
  retryAt: number | null;
  /** Take a ticket the API returned from an action (e.g. cancel). */
  replace: (ticket: Ticket) => void;
  /** Poll now, after the shopper did something that changes the ticket. */
  refetch: () => void;
}

export function useTicketPolling(ticketId: string): TicketPoll {
  const [ticket, setTicket] = useState<Ticket | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [notFound, setNotFound] = useState(false);
  const [retryAt, setRetryAt] = useState<number | null>(null);
  const [generation, setGeneration] = useState(0);
  const latest = useRef<Ticket | undefined>(undefined);

  useEffect(() => {
    setTicket(undefined);
    latest.current = undefined;
    setNotFound(false);
    setError(null);
  }, [ticketId]);

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    let stream: EventSource | undefined;
    // Once a stream failed for this ticket the page polls: a proxy that breaks streams would
    // only fail again.
    let streamFailed = false;

    const take = (fresh: Ticket) => {
      latest.current = fresh;
      setTicket(fresh);
      setError(null);
      setRetryAt(null);
    };

    // The browser reconnects by itself after a dropped connection, sending Last-Event-ID, and
    // the server then sends the ticket only if it changed. It reconnects with the URL's token,
    // though, which expires: a stream that worked and is then refused (401) is opened again
    // with the fresh token of a poll made at once. Errors of a stream that never delivered an
    // event (refused from the start, or cut again and again) mean polling instead.
    const follow = (current: Ticket) => {
      const source = new EventSource(ticketStreamUrl(current));
      stream = source;
      let errors = 0;
      let delivered = false;
      source.addEventListener('ticket', (event) => {
        if (stopped) return;
        errors = 0;
        delivered = true;
        const fresh = JSON.parse((event as MessageEvent<string>).data) as Ticket;
        take(fresh);
        if (isSettledTicket(fresh)) {
          source.close();
          stream = undefined;
        }
      });
      source.onerror = () => {
        if (stopped) return;
        errors += 1;
        const refused = source.readyState === EventSource.CLOSED;
        if (refused || errors >= STREAM_MAX_ERRORS) {
          source.close();
          stream = undefined;
          if (refused && delivered) {
            timer = setTimeout(poll, 0); // a fresh token, and the stream again
            return;
          }
          streamFailed = true;
          timer = setTimeout(poll, nextPollDelay(latest.current?.poll_after_ms, 0));
        }
      };
    };

    const poll = async () => {
      let delay: number;
      try {
        const fresh = await tickets.get(ticketId);
        if (stopped) return;
        failures = 0;
        take(fresh);
        if (isSettledTicket(fresh)) return;
        if (!streamFailed && canStream(fresh)) {
          follow(fresh);
          return;
        }
        delay = nextPollDelay(fresh.poll_after_ms, 0);
      } catch (caught) {
        if (stopped) return;
        if (caught instanceof ApiError && caught.status === 404) {
          setNotFound(true);
          return;
        }
        if (caught instanceof ApiError && caught.code === 'session_expired') return;
        failures += 1;
        setError(caught);
        const after = caught instanceof ApiError ? caught.retryAfterSeconds : null;
        delay = nextPollDelay(latest.current?.poll_after_ms, failures, after);
        setRetryAt(Date.now() + delay);
      }
      timer = setTimeout(poll, delay);
    };

    // A ticket already known to be final (replaced after an action) needs no polling.
    if (latest.current && isSettledTicket(latest.current) && latest.current.id === ticketId) {
      return undefined;
    }
    void poll();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      stream?.close();
    };
  }, [ticketId, generation]);

  const replace = useCallback((next: Ticket) => {
    latest.current = next;
    setTicket(next);
  }, []);
  const refetch = useCallback(() => setGeneration((n) => n + 1), []);
  return { ticket, error, notFound, retryAt, replace, refetch };
}

/** The sale a ticket belongs to, refreshed every few seconds while `live`. */
export function useSaleRefresh(saleId: string | undefined, live: boolean): Sale | undefined {
  const [sale, setSale] = useState<Sale | undefined>(undefined);
  useEffect(() => {
    if (!saleId) return undefined;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const load = async () => {
      try {
        const fresh = await sales.get(saleId);
        if (stopped) return;
        failures = 0;
        setSale(fresh);
      } catch {
        if (stopped) return;
        failures += 1;
      }
      if (live) timer = setTimeout(load, nextPollDelay(SALE_REFRESH_MS, failures));
    };
    void load();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [saleId, live]);
  return sale;
}
