// One flash sale: a countdown until it opens, then the Buy button that joins the waiting room.
import { useEffect, useState } from 'react';
import { Link, useLocation, useNavigate, useParams } from 'react-router';
import { ApiError } from '../api/client';
import { cachedProduct, sales } from '../api/shop';
import { isFinalTicketStatus, type EntryRequirements, type Sale, type Ticket } from '../api/types';
import { useAuth } from '../auth/AuthContext';
import { Countdown } from '../components/Countdown';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { ProductImage } from '../components/ProductCard';
import { SALE_STATUS_LABEL } from '../components/SaleCard';
import { SalePrice } from '../components/SalePrice';
import { DevMailboxLink, ResendVerification } from '../components/VerificationPrompt';
import { now } from '../lib/clock';
import { useEntryChallenge } from '../lib/entryChallenge';
import { useNow, useResource, useTitle } from '../lib/hooks';
import { loginPath } from '../lib/navigation';
import { nextPollDelay, SALE_REFRESH_MS } from '../lib/polling';
import { rememberTicket, ticketForSale } from '../lib/ticketStore';
import { formatDateTime, formatTimeOfDay } from '../lib/time';
import { STATUS_LABEL } from './TicketPage';

/** "Entry: verified email · one card per person", or null when the sale asks for nothing. */
export function entryLine(entry: EntryRequirements | undefined): string | null {
  if (!entry) return null;
  const parts = [
    entry.verified_email ? 'verified email' : null,
    entry.challenge ? 'a quick check in your browser' : null,
    entry.one_card ? 'one card per person' : null,
  ].filter(Boolean);
  return parts.length ? `Entry: ${parts.join(' · ')}` : null;
}

/** For a signed-in shopper who has not confirmed the address a sale requires. */
function VerifyBanner() {
  return (
    <div className="notice" role="status" data-testid="verify-banner">
      <p>
        <strong>This sale is open to verified accounts.</strong> Open the link we emailed you to confirm your
        address, then come back here.
      </p>
      <ResendVerification />
      <DevMailboxLink />
    </div>
  );
}

/** The sale, refreshed every few seconds while it can still change. */
function useLiveSale(saleId: string) {
  const [sale, setSale] = useState<Sale | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const load = async () => {
      let settled = false;
      try {
        const fresh = await sales.get(saleId);
        if (stopped) return;
        failures = 0;
        setSale(fresh);
        setError(null);
        settled = fresh.status === 'ended' || fresh.status === 'sold_out';
      } catch (caught) {
        if (stopped) return;
        failures += 1;
        setError(caught);
        if (caught instanceof ApiError && caught.status === 404) return;
      }
      if (!settled) timer = setTimeout(load, nextPollDelay(SALE_REFRESH_MS, failures));
    };
    void load();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [saleId, generation]);
  return { sale, error, reload: () => setGeneration((n) => n + 1) };
}

/** The caller's latest ticket for this sale: asked of the API, else remembered in this browser. */
function useMyTicket(saleId: string, signedIn: boolean) {
  const [ticket, setTicket] = useState<Ticket | null | undefined>(undefined);
  useEffect(() => {
    if (!signedIn) {
      setTicket(null);
      return undefined;
    }
    let current = true;
    sales.myTicket(saleId).then(
      (found) => {
        if (!current) return;
        rememberTicket(found);
        setTicket(found);
      },
      (error) => {
        if (!current) return;
        if (error instanceof ApiError && error.status === 404) {
          setTicket(null);
          return;
        }
        // The lookup failed: fall back to the ticket this browser remembers.
        const remembered = ticketForSale(saleId);
        setTicket(
          remembered
            ? ({ id: remembered.ticketId, sale_id: saleId, status: 'queued' } as Ticket)
            : null,
        );
      },
    );
    return () => {
      current = false;
    };
  }, [saleId, signedIn]);
  return ticket;
}

export function SalePage() {
  const { saleId = '' } = useParams();
  const { user } = useAuth();
  const navigate = useNavigate();
  const location = useLocation();
  const { sale, error: saleError, reload } = useLiveSale(saleId);
  const product = useResource(
    () => (sale ? cachedProduct(sale.product_id) : Promise.resolve(undefined)),
    [sale?.product_id],
  );
  const myTicket = useMyTicket(saleId, Boolean(user));
  const [joining, setJoining] = useState(false);
  const [joinError, setJoinError] = useState<unknown>(null);
  const [soldOut, setSoldOut] = useState(false);
  const [retryUntil, setRetryUntil] = useState(0);
  const clock = useNow();
  useTitle(product.data?.name ? `Flash sale: ${product.data.name}` : 'Flash sale');
  // Solved in the background while the shopper reads this page or waits for the start.
  const needsChallenge =
    Boolean(sale?.entry?.challenge) &&
    Boolean(user) &&
    !(myTicket && !isFinalTicketStatus(myTicket.status)) &&
    sale?.status !== 'ended' &&
    sale?.status !== 'sold_out';
  const entryChallenge = useEntryChallenge(needsChallenge, () => sales.challenge(saleId));

  if (!sale) {
    return (
      <section className="page">
        <h1>Flash sale</h1>
        {saleError ? <ErrorAlert error={saleError} /> : <Loading />}
      </section>
    );
  }

  const startsAt = Date.parse(sale.starts_at);
  const endsAt = Date.parse(sale.ends_at);
  const beforeStart = (sale.status === 'scheduled' || sale.status === 'lobby') && clock < startsAt;
  // The lobby: between lobby_opens_at and starts_at shoppers join it and get a random place at the start.
  const lobbyOpensAt = sale.lobby_opens_at ? Date.parse(sale.lobby_opens_at) : null;
  const lobbyOpen = beforeStart && lobbyOpensAt !== null && clock >= lobbyOpensAt;
  const ended = sale.status === 'ended' || (sale.status !== 'sold_out' && clock >= endsAt);
  const isSoldOut = soldOut || sale.status === 'sold_out';
  const liveTicket = myTicket && !isFinalTicketStatus(myTicket.status) ? myTicket : null;
  const paidTicket = myTicket?.status === 'paid' ? myTicket : null;
  const rateLimited = retryUntil > clock;
  const entry = entryLine(sale.entry);
  const mustVerify =
    (Boolean(sale.entry?.verified_email) && user?.email_verified === false) ||
    (joinError instanceof ApiError && joinError.code === 'email_unverified');

  const buy = async () => {
    if (user === undefined) return; // the session is still being checked
    if (!user) {
      navigate(loginPath(location));
      return;
    }
    setJoining(true);
    setJoinError(null);
    try {
      let ticket;
      try {
        ticket = await sales.join(sale.id, 1, sale.entry?.challenge ? await entryChallenge.take() : null);
      } catch (caught) {
        // Expired or spent meanwhile: solve a fresh one and knock once more.
        if (!(caught instanceof ApiError && caught.code === 'challenge_required')) throw caught;
        ticket = await sales.join(sale.id, 1, await entryChallenge.take(true));
      }
      rememberTicket(ticket);
      navigate(`/tickets/${encodeURIComponent(ticket.id)}`);
    } catch (caught) {
      setJoining(false);
      if (caught instanceof ApiError) {
        if (caught.status === 410 || caught.code === 'sold_out') {
          setSoldOut(true);
          return;
        }
        if (caught.code === 'queue_full') {
          // The operator capped the line: say so plainly; a place frees as tickets end.
          setJoinError(
            'The waiting room is full right now: the shop has capped how many shoppers wait at once. Try again in a few minutes.',
          );
          return;
        }
        // Our clock and the server's disagree: show its message and look at the sale again.
        if (caught.status === 409 && caught.code === 'sale_not_open') reload();
        if (caught.status === 429) setRetryUntil(now() + (caught.retryAfterSeconds ?? 5) * 1000);
      }
      setJoinError(caught);
    }
  };

  const draw = sale.mode === 'draw';
  let action;
  if (liveTicket?.status === 'lobby' && draw) {
    action = (
      <div className="notice" data-testid="draw-joined">
        <p>
          You have an entry in the draw at <strong>{formatTimeOfDay(sale.starts_at)}</strong>. Your card is charged only if
          you are drawn.
        </p>
        <p>
          <Link className="button button-primary" to={`/tickets/${encodeURIComponent(liveTicket.id)}`} data-testid="resume-ticket">
            Go to your entry
          </Link>
        </p>
      </div>
    );
  } else if (liveTicket?.status === 'lobby') {
    action = (
      <div className="notice" data-testid="lobby-joined">
        <p data-testid="lobby-message">
          You're in: at <strong>{formatTimeOfDay(sale.starts_at)}</strong> everyone in the lobby gets a random place.
        </p>
        <Countdown to={sale.starts_at} testId="sale-countdown" label="Time until the places are drawn" onDone={reload} />
        <p>
          <Link className="button button-primary" to={`/tickets/${encodeURIComponent(liveTicket.id)}`} data-testid="resume-ticket">
            Follow your place
          </Link>
        </p>
      </div>
    );
  } else if (liveTicket) {
    action = (
      <div className="notice">
        <p>You already have a place in this sale ({STATUS_LABEL[liveTicket.status]}).</p>
        <Link className="button button-primary" to={`/tickets/${encodeURIComponent(liveTicket.id)}`} data-testid="resume-ticket">
          Go to your place in line
        </Link>
      </div>
    );
  } else if (isSoldOut) {
    action = (
      <p className="notice" data-testid="sold-out-message">
        Sold out: every unit has been sold. <Link to="/sales">See other flash sales</Link>.
      </p>
    );
  } else if (ended) {
    action = (
      <p className="notice" data-testid="sale-ended-message">
        This sale has ended. <Link to="/sales">See other flash sales</Link>.
      </p>
    );
  } else if (beforeStart) {
    action = (
      <div className="sale-countdown">
        <p>Starts in</p>
        <Countdown to={sale.starts_at} testId="sale-countdown" label="Time until the sale starts" onDone={reload} />
        <p className="muted">{formatDateTime(sale.starts_at)}</p>
        {lobbyOpen ? (
          <>
            <button
              type="button"
              className="button button-primary button-wide"
              onClick={buy}
              disabled={joining || rateLimited || user === undefined}
              data-testid="join-lobby-button"
            >
              {joining ? (draw ? 'Entering…' : 'Joining the lobby…') : draw ? 'Enter the draw' : 'Join the lobby'}
            </button>
            {draw ? (
              <p className="muted" data-testid="draw-explainer">
                Enter the draw: your card is authorised now and charged only if you are drawn. The draw is at{' '}
                {formatTimeOfDay(sale.starts_at)}; entering early or late makes no difference.
                {sale.lobby_size ? ` ${sale.lobby_size} entered.` : ''}
              </p>
            ) : (
              <p className="muted" data-testid="lobby-explainer">
                Everyone in the lobby at {formatTimeOfDay(sale.starts_at)} gets a random place in line, drawn fairly:
                joining now or a minute before the start makes no difference.
                {sale.lobby_size ? ` ${sale.lobby_size} in the lobby.` : ''}
              </p>
            )}
          </>
        ) : (
          <>
            <button type="button" className="button button-primary button-wide" disabled data-testid="buy-button">
              Buy opens at the start
            </button>
            {lobbyOpensAt !== null && clock < lobbyOpensAt ? (
              <p className="muted">The lobby opens at {formatDateTime(sale.lobby_opens_at)}.</p>
            ) : null}
          </>
        )}
      </div>
    );
  } else {
    action = (
      <button
        type="button"
        className="button button-primary button-wide"
        onClick={buy}
        disabled={joining || rateLimited || user === undefined}
        data-testid="buy-button"
      >
        {joining ? 'Joining the line…' : rateLimited ? `Try again in ${Math.ceil((retryUntil - clock) / 1000)} s` : 'Buy now'}
      </button>
    );
  }

  return (
    <section className="page product-page sale-page">
      {product.data ? <ProductImage product={product.data} /> : <div className="product-image" />}
      <div>
        <p className={`badge badge-${sale.status}`} data-testid="sale-status">
          {SALE_STATUS_LABEL[sale.status] ?? sale.status}
        </p>
        <h1>{product.data?.name ?? 'Flash sale'}</h1>
        <SalePrice sale={sale} product={product.data} className="price price-large" testId="sale-price" />
        {product.data?.description ? <p>{product.data.description}</p> : null}
        <p className="stat-line" data-testid="sale-stock">
          {sale.stock_available} of {sale.stock_total} left · {sale.queue_length} in line
        </p>
        <p className="muted">
          {formatDateTime(sale.starts_at)} – {formatDateTime(sale.ends_at)}
        </p>
        {entry ? (
          <p className="muted" data-testid="sale-entry">
            {entry}
          </p>
        ) : null}
        {mustVerify && !liveTicket && !ended && !isSoldOut ? <VerifyBanner /> : null}
        {needsChallenge && !ended ? (
          <p className="muted" data-testid="challenge-status" data-ready={entryChallenge.ready ? 'true' : 'false'}>
            {entryChallenge.ready
              ? 'Your browser has done the entry check: you are ready.'
              : 'Your browser is doing the entry check in the background…'}
          </p>
        ) : null}
        {action}
        <ErrorAlert error={joinError} testId="buy-error" />
        {paidTicket ? (
          <p className="notice">
            You bought this in this sale.{' '}
            {paidTicket.order_id ? (
              <Link to={`/orders/${encodeURIComponent(paidTicket.order_id)}`}>See your order</Link>
            ) : (
              <Link to="/orders">See your orders</Link>
            )}
            .
          </p>
        ) : null}
        {user === null ? (
          <p className="muted">
            <Link to={loginPath(location)}>Log in</Link> or <Link to="/register">sign up</Link> before the sale starts
            to be quick.
          </p>
        ) : null}
      </div>
    </section>
  );
}
