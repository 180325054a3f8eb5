// The waiting room for one ticket (/tickets/<id>): it polls the ticket at the server's pace and
// shows the view of its status: the queue, the payment form, the paid order, or what to do next.
import { useEffect, useRef, useState } from 'react';
import { Link, useParams } from 'react-router';
import { errorMessage } from '../api/client';
import { cachedProduct, orders, tickets } from '../api/shop';
import { isFinalTicketStatus, type Hold, type Sale, type Ticket, type TicketStatus } from '../api/types';
import { CardPayment } from '../components/CardPayment';
import { Countdown } from '../components/Countdown';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { Money } from '../components/Money';
import { OutlookNote } from '../components/Outlook';
import { ProgressBar } from '../components/ProgressBar';
import { useNow, useResource, useTitle } from '../lib/hooks';
import { useSaleRefresh, useTicketPolling } from '../lib/polling';
import { forgetTicket, rememberTicket } from '../lib/ticketStore';
import { roundTime } from '../lib/fairness';
import { formatDateTime, formatTimeOfDay, formatWait } from '../lib/time';

export const STATUS_LABEL: Record<TicketStatus, string> = {
  lobby: 'In the lobby',
  queued: 'In line',
  reserved: 'Reserved for you',
  paid: 'Paid',
  sold_out: 'Sold out',
  expired: 'Reservation expired',
  cancelled: 'Left the line',
  payment_failed: 'Payment declined',
  abandoned: 'Place given up',
  not_selected: 'Not selected',
};

const HEADING: Record<TicketStatus, string> = {
  lobby: "You're in the lobby",
  queued: "You're in line",
  reserved: "It's your turn: pay to get it",
  paid: 'You got it!',
  sold_out: 'Sold out before your turn',
  expired: 'Your reservation ran out',
  cancelled: 'You left the line',
  payment_failed: 'Your payment was declined',
  abandoned: 'You were away when your turn came',
  not_selected: 'You were not drawn this time',
};

/** A draw entry's heading follows its hold; the result's, the draw. */
function headingFor(ticket: Ticket): string {
  if (ticket.hold && ticket.status === 'lobby') {
    return ticket.hold.status === 'held' ? "You're entered in the draw" : 'Enter the draw';
  }
  if (ticket.hold && ticket.status === 'paid') return 'You won the draw!';
  if (ticket.hold && ticket.status === 'payment_failed') return 'You were drawn, but the charge failed';
  return HEADING[ticket.status] ?? 'Your ticket';
}

// Position updates are announced at most this often, so a screen reader is not flooded.
const ANNOUNCE_EVERY_MS = 15_000;

function announcementFor(ticket: Ticket): string {
  switch (ticket.status) {
    case 'lobby':
      return "You're in the lobby. Everyone in it gets a random place at the start.";
    case 'queued':
      return ticket.position === 1
        ? "You're next in line."
        : ticket.position
          ? `You are number ${ticket.position} in line. Estimated wait ${formatWait(ticket.eta_seconds)}.`
          : 'You are in line.';
    case 'reserved':
      return "It's your turn. The item is reserved for you: pay before the timer runs out.";
    default:
      return `${HEADING[ticket.status] ?? 'Your ticket changed'}.`;
  }
}

/** A polite live-region message that follows the ticket without flooding screen readers. */
function useAnnouncement(ticket: Ticket | undefined): string {
  const [message, setMessage] = useState('');
  const last = useRef<{ status?: TicketStatus; at: number }>({ at: 0 });
  useEffect(() => {
    if (!ticket) return;
    const next = announcementFor(ticket);
    const now = Date.now();
    const statusChanged = last.current.status !== ticket.status;
    const nearFront = ticket.status === 'queued' && (ticket.position ?? Infinity) <= 3;
    if (statusChanged || nearFront || now - last.current.at >= ANNOUNCE_EVERY_MS) {
      last.current = { status: ticket.status, at: now };
      setMessage(next);
    }
  }, [ticket]);
  return message;
}

function LeaveButton({
  ticket,
  onLeft,
  label,
}: {
  ticket: Ticket;
  onLeft: (ticket: Ticket | null) => void;
  label: string;
}) {
  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const leave = async () => {
    setBusy(true);
    setError(null);
    try {
      const answer = await tickets.cancel(ticket.id);
      onLeft(answer && typeof answer === 'object' && 'status' in answer ? answer : null);
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  };
  return (
    <div className="leave">
      {confirming ? (
        <div className="leave-confirm" role="group" aria-label="Confirm leaving">
          <span>Give up your place?</span>
          <button
            type="button"
            className="button button-danger"
            disabled={busy}
            onClick={leave}
            data-testid="leave-queue-confirm"
          >
            {busy ? 'Leaving…' : 'Yes, leave'}
          </button>
          <button type="button" className="button" disabled={busy} onClick={() => setConfirming(false)} autoFocus>
            Stay
          </button>
        </div>
      ) : (
        <button type="button" className="button" onClick={() => setConfirming(true)} data-testid="leave-queue-button">
          {label}
        </button>
      )}
      <ErrorAlert error={error} />
    </div>
  );
}

function SaleStock({ sale }: { sale: Sale | undefined }) {
  return (
    <p className="stat-line" data-testid="sale-stock">
      {sale ? `${sale.stock_available} of ${sale.stock_total} left · ${sale.queue_length} in line` : '\u00a0'}
    </p>
  );
}

/** Where a shopper checks the draw of their own place (FairnessPage). */
export function fairnessPath(saleId: string, ticketId: string): string {
  return `/sales/${encodeURIComponent(saleId)}/fairness?ticket=${encodeURIComponent(ticketId)}`;
}

function FairnessLink({ ticket }: { ticket: Ticket }) {
  return (
    <p>
      <Link to={fairnessPath(ticket.sale_id, ticket.id)} data-testid="fairness-link">
        How was my place drawn?
      </Link>
    </p>
  );
}

const HOLD_VERB = {
  action: 'Authorise',
  working: 'Authorising…',
  sent: 'Card authorised',
  step: 'Authorising your card…',
};

/** A draw sale's entry: the card is held now, charged only if the entry is drawn at starts_at. */
function DrawEntryView({
  ticket,
  hold,
  sale,
  onChanged,
  onLeft,
}: {
  ticket: Ticket;
  hold: Hold;
  sale: Sale | undefined;
  onChanged: () => void;
  onLeft: (ticket: Ticket | null) => void;
}) {
  const drawAt = sale ? <strong data-testid="draw-time">{formatTimeOfDay(sale.starts_at)}</strong> : '…';
  if (hold.status === 'held') {
    return (
      <div className="queue lobby" data-testid="draw-entered">
        <p className="notice" data-testid="draw-entered-message">
          You're entered. The draw is at {drawAt}: if you are drawn, your card is charged{' '}
          <Money cents={hold.amount_cents} currency={hold.currency ?? sale?.currency ?? 'USD'} testId="hold-amount" />;
          if not, the hold is released.
        </p>
        {sale ? (
          <div className="sale-countdown">
            <p>The draw is in</p>
            <Countdown to={sale.starts_at} testId="draw-countdown" label="Time until the draw" />
          </div>
        ) : null}
        <p className="muted">Keep this page open, or come back after the draw: it shows the result.</p>
        <FairnessLink ticket={ticket} />
        <LeaveButton ticket={ticket} onLeft={onLeft} label="Withdraw" />
      </div>
    );
  }
  return (
    <div className="reserved" data-testid="draw-hold-view">
      <p className="notice">
        Enter the draw at {drawAt}: your card is authorised now for{' '}
        <Money cents={hold.amount_cents} currency={hold.currency ?? sale?.currency ?? 'USD'} testId="hold-amount" /> and
        charged only if you are drawn.
      </p>
      {hold.status === 'failed' ? (
        <p className="payment-error" role="alert" data-testid="hold-declined">
          Your card was declined: try another card to enter the draw.
        </p>
      ) : null}
      <CardPayment
        amountCents={hold.amount_cents}
        currency={hold.currency ?? sale?.currency ?? 'USD'}
        pay={(token) => tickets.hold(ticket.id, token)}
        onSubmitted={onChanged}
        onDeclined={onChanged}
        allowRetryAfterDecline
        verb={HOLD_VERB}
      />
      <LeaveButton ticket={ticket} onLeft={onLeft} label="Withdraw" />
    </div>
  );
}

/** Before the start: no place yet; at starts_at every lobby ticket gets a random one (with a
 *  beacon draw, once the announced round is out: the sale is `drawing` meanwhile). */
function LobbyView({ ticket, sale }: { ticket: Ticket; sale: Sale | undefined }) {
  const beacon = sale?.fairness?.beacon;
  return (
    <div className="queue lobby" data-testid="lobby-view">
      {sale?.status === 'drawing' && beacon ? (
        <p className="notice" data-testid="lobby-drawing">
          The lobby has closed. Places are being drawn from the public randomness beacon&apos;s round {beacon.round}, due
          at <strong>{formatTimeOfDay(roundTime(beacon).toISOString())}</strong>: you get yours a moment after.
        </p>
      ) : (
        <>
          <p className="notice" data-testid="lobby-message">
            You're in: at <strong data-testid="lobby-start-time">{sale ? formatTimeOfDay(sale.starts_at) : '…'}</strong>{' '}
            everyone in the lobby gets a random place{beacon ? ', drawn a few seconds later' : ''}.
          </p>
          {sale ? (
            <div className="sale-countdown">
              <p>The lobby closes in</p>
              <Countdown to={sale.starts_at} testId="lobby-countdown" label="Time until the lobby closes" />
            </div>
          ) : null}
        </>
      )}
      <p className="stat-line" data-testid="lobby-size">
        {sale?.lobby_size !== undefined ? `${sale.lobby_size} in the lobby` : '\u00a0'}
      </p>
      <OutlookNote ticket={ticket} />
      <p className="muted">
        Arriving early or late within the lobby makes no difference:{' '}
        {beacon
          ? 'the order is drawn from a public randomness beacon round that is produced only after the lobby closes, so nobody, not even the shop, can know it in advance.'
          : 'the order is drawn from a secret committed to before anyone joined.'}{' '}
        Keep this page open; it shows your place as soon as it is drawn.
      </p>
      <FairnessLink ticket={ticket} />
    </div>
  );
}

function QueueView({
  ticket,
  sale,
  firstPosition,
  onLeft,
}: {
  ticket: Ticket;
  sale: Sale | undefined;
  firstPosition: number | null;
  onLeft: (ticket: Ticket | null) => void;
}) {
  const position = ticket.position;
  const start = Math.max(firstPosition ?? position ?? 1, position ?? 1);
  const progress = position ? (start - position + 1) / (start + 1) : 0;
  return (
    <div className="queue" data-testid="queue-view">
      <div className="queue-figures">
        <div className="figure">
          <span className="figure-label" id="position-label">
            Your place in line
          </span>
          <span className="figure-value" aria-labelledby="position-label" data-testid="queue-position">
            {position ?? '—'}
          </span>
        </div>
        <div className="figure">
          <span className="figure-label">Estimated wait</span>
          <span className="figure-value figure-value-small" data-testid="queue-eta">
            {ticket.paused ? 'Paused by the shop: you keep your place' : formatWait(ticket.eta_seconds)}
          </span>
        </div>
      </div>
      <ProgressBar value={progress} label="Progress to the front of the line" testId="queue-progress" />
      <SaleStock sale={sale} />
      <OutlookNote ticket={ticket} />
      <p className="muted">
        Keep this page open; it moves on by itself. You can reload it or come back from the sale page.
      </p>
      {sale?.lobby_size ? <FairnessLink ticket={ticket} /> : null}
      <LeaveButton ticket={ticket} onLeft={onLeft} label="Leave the queue" />
    </div>
  );
}

function ReservedView({
  ticket,
  onLeft,
  onDeclined,
}: {
  ticket: Ticket;
  onLeft: (ticket: Ticket | null) => void;
  onDeclined: (message: string) => void;
}) {
  const reservation = ticket.reservation;
  const [submitted, setSubmitted] = useState(false);
  const now = useNow();
  if (!reservation) return <Loading label="Reserving your item…" />;
  const expired = Date.parse(reservation.expires_at) <= now;
  return (
    <div className="reserved" data-testid="payment-view">
      <p className="reservation-timer">
        Reserved for you for{' '}
        <Countdown to={reservation.expires_at} testId="reservation-countdown" label="Time left to pay" />
      </p>
      <p className="price-large">
        Total: <Money cents={reservation.amount_cents} currency={reservation.currency} testId="payment-amount" />
      </p>
      {submitted ? (
        <p className="notice" role="status" data-testid="payment-confirming">
          Payment sent. Waiting for the confirmation…
        </p>
      ) : expired ? (
        <p className="notice" role="status">
          Time is up. Checking your reservation…
        </p>
      ) : null}
      {!expired || submitted ? (
        <CardPayment
          amountCents={reservation.amount_cents}
          currency={reservation.currency}
          pay={(token) => tickets.pay(ticket.id, token)}
          onSubmitted={() => setSubmitted(true)}
          onDeclined={onDeclined}
          // While the reservation still holds, another card may be tried; once the decline
          // releases it the ticket turns payment_failed and this view gives way.
          allowRetryAfterDecline
        />
      ) : null}
      {!submitted ? <LeaveButton ticket={ticket} onLeft={onLeft} label="Give up my reservation" /> : null}
    </div>
  );
}

function PaidView({ ticket }: { ticket: Ticket }) {
  const order = useResource(
    () => (ticket.order_id ? orders.get(ticket.order_id) : Promise.resolve(undefined)),
    [ticket.order_id],
  );
  return (
    <div className="paid" data-testid="paid-order-summary">
      {ticket.hold ? (
        <p className="notice" data-testid="draw-won">
          You were drawn: you won. Your card hold was captured for the order below.
        </p>
      ) : null}
      {order.data ? (
        <>
          <p>
            Order <code data-testid="paid-order-id">{order.data.id}</code> is{' '}
            <strong data-testid="paid-order-status">{order.data.status === 'paid' ? 'paid' : order.data.status}</strong>.
          </p>
          <p className="price-large">
            <Money cents={order.data.amount_cents} currency={order.data.currency} testId="paid-order-amount" />
          </p>
          <p className="muted">Placed {formatDateTime(order.data.created_at)}</p>
        </>
      ) : order.error ? (
        <ErrorAlert error={order.error} />
      ) : (
        <Loading label="Loading your order…" />
      )}
      <p>
        {ticket.order_id ? (
          <>
            <Link to={`/orders/${encodeURIComponent(ticket.order_id)}`} data-testid="paid-order-link">
              See this order
            </Link>{' '}
            ·{' '}
          </>
        ) : null}
        <Link to="/orders">See all your orders</Link>
      </p>
    </div>
  );
}

function OutcomeView({ ticket, paymentNote }: { ticket: Ticket; paymentNote: string | null }) {
  const saleLink = (
    <Link className="button" to={`/sales/${encodeURIComponent(ticket.sale_id)}`}>
      Back to the sale
    </Link>
  );
  const otherSales = <Link to="/sales">See other flash sales</Link>;
  let body;
  switch (ticket.status) {
    case 'sold_out':
      body = (
        <p data-testid="sold-out-message">
          Every unit was sold before your turn came. Nothing was charged. Reservations that run out go back
          on sale, so check the sale page, or look at other flash sales.
        </p>
      );
      break;
    case 'expired':
      body = ticket.payment_pending ? (
        <p className="notice" role="status" data-testid="late-payment-pending">
          The reservation ran out just as a payment was being made. We are checking with the bank: if it went
          through, you get the item, or a full refund if it is gone. Keep this page open; it shows the result.
        </p>
      ) : ticket.refunded ? (
        <p data-testid="late-payment-refunded">
          Your payment arrived after the reservation ran out and could not be honoured (the item had gone to
          someone else, or you already have your share), so it was refunded in full.
        </p>
      ) : (
        <p>
          The reservation ran out before the payment went through, so the item went back to the line. Nothing
          was charged. If the sale is still open you can join the line again.
        </p>
      );
      break;
    case 'cancelled':
      body = <p>You gave up your place. If the sale is still open you can join the line again.</p>;
      break;
    case 'abandoned':
      body = (
        <p>
          Your turn came while this page had been closed for a while, so your place went to the next shopper.
          Nothing was charged. If the sale is still open you can join the line again.
        </p>
      );
      break;
    case 'not_selected':
      body = (
        <p data-testid="draw-not-selected">
          Not selected: your hold was released. Every unit went to entries drawn before yours, and your card was
          never charged.
        </p>
      );
      break;
    case 'payment_failed':
      body = ticket.hold ? (
        <p data-testid="draw-capture-failed">
          You were drawn, but the capture failed: the bank refused to charge the card hold, so the unit went to
          the next entry. Nothing was charged.
        </p>
      ) : (
        <>
          <p data-testid="payment-declined-message">
            {paymentNote ? `${paymentNote} ` : ''}The reservation was released and nothing was charged.
          </p>
          <p>Check your card details or use another card, then join the line again if the sale is still open.</p>
        </>
      );
      break;
    default:
      body = null;
  }
  return (
    <div className="outcome" data-testid="ticket-outcome" data-status={ticket.status}>
      {body}
      <p className="actions">
        {saleLink} {otherSales}
      </p>
    </div>
  );
}

export function TicketPage() {
  const { ticketId = '' } = useParams();
  const poll = useTicketPolling(ticketId);
  const ticket = poll.ticket;
  const live = ticket?.status === 'lobby' || ticket?.status === 'queued' || ticket?.status === 'reserved';
  const sale = useSaleRefresh(ticket?.sale_id, live);
  const product = useResource(
    () => (sale ? cachedProduct(sale.product_id) : Promise.resolve(undefined)),
    [sale?.product_id],
  );
  const [paymentNote, setPaymentNote] = useState<string | null>(null);
  const [firstPosition, setFirstPosition] = useState<number | null>(null);
  const announcement = useAnnouncement(ticket);
  const now = useNow(poll.retryAt !== null);
  const heading = ticket ? headingFor(ticket) : 'Your place in line';
  useTitle(heading);

  useEffect(() => {
    if (ticket) setFirstPosition(rememberTicket(ticket).firstPosition);
  }, [ticket]);

  useEffect(() => {
    if (poll.notFound) forgetTicket(ticketId);
  }, [poll.notFound, ticketId]);

  if (poll.notFound) {
    return (
      <section className="page">
        <h1>Ticket not found</h1>
        <p>
          This ticket does not exist or belongs to another account. <Link to="/sales">See the flash sales</Link>.
        </p>
      </section>
    );
  }
  if (!ticket) {
    return (
      <section className="page">
        <h1>Your place in line</h1>
        {poll.error ? <ErrorAlert error={poll.error} /> : <Loading label="Finding your place in line…" />}
      </section>
    );
  }

  const onLeft = (answer: Ticket | null) => (answer ? poll.replace(answer) : poll.refetch());
  const retryIn = poll.retryAt !== null ? Math.max(0, Math.ceil((poll.retryAt - now) / 1000)) : 0;

  return (
    <section className="page ticket-page" aria-labelledby="ticket-heading">
      <h1 id="ticket-heading">{heading}</h1>
      <p className="ticket-meta">
        <span className="muted ticket-product">{product.data?.name ?? '\u00a0'}</span>
        <span className={`badge badge-${ticket.status}`} data-testid="ticket-status" data-status={ticket.status}>
          {STATUS_LABEL[ticket.status] ?? ticket.status}
        </span>
      </p>
      <p className="visually-hidden" aria-live="polite" aria-atomic="true" data-testid="queue-announcer">
        {announcement}
      </p>
      <p className="connection-note" data-testid="connection-note">
        {poll.error ? `${errorMessage(poll.error)} Trying again in ${retryIn} s.` : '\u00a0'}
      </p>
      {ticket.status === 'lobby' && ticket.hold ? (
        <DrawEntryView
          ticket={ticket}
          hold={ticket.hold}
          sale={sale}
          onChanged={() => poll.refetch()}
          onLeft={onLeft}
        />
      ) : ticket.status === 'lobby' ? (
        <LobbyView ticket={ticket} sale={sale} />
      ) : ticket.status === 'queued' ? (
        <QueueView ticket={ticket} sale={sale} firstPosition={firstPosition} onLeft={onLeft} />
      ) : ticket.status === 'reserved' ? (
        <ReservedView key={ticket.id} ticket={ticket} onLeft={onLeft} onDeclined={setPaymentNote} />
      ) : ticket.status === 'paid' ? (
        <PaidView ticket={ticket} />
      ) : isFinalTicketStatus(ticket.status) ? (
        <OutcomeView ticket={ticket} paymentNote={paymentNote} />
      ) : (
        <Loading label="Working on your ticket…" />
      )}
      {ticket.status !== 'lobby' && ticket.status !== 'queued' && sale?.lobby_size ? (
        <FairnessLink ticket={ticket} />
      ) : null}
    </section>
  );
}
