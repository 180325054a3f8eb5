import { act, cleanup, fireEvent, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { tokens } from '../api/client';
import type { Hold, Ticket } from '../api/types';
import type { StripeInstance } from '../lib/stripe';
import { ticketForSale } from '../lib/ticketStore';
import { customer, order, product, sale, ticket } from '../test/fixtures';
import { apiError, installFetch, json, type Answer } from '../test/http';
import { advance, renderRoute } from '../test/render';
import { formatTimeOfDay } from '../lib/time';
import { TicketPage } from './TicketPage';

const at = { path: '/tickets/t1', pattern: '/tickets/:ticketId' };

function serve(ticketAnswers: Array<() => Answer>, extra: Record<string, () => Answer> = {}) {
  return installFetch({
    'GET /api/auth/me': () => json(200, customer),
    'GET /api/tickets/t1': ticketAnswers,
    'GET /api/sales/s1': () => json(200, sale()),
    'GET /api/products/p1': () => json(200, product),
    ...extra,
  });
}

describe('queue page', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:02Z'));
    tokens.set({ access_token: 'a' });
  });

  it("shows position, wait and stock, and polls at the ticket's poll_after_ms, never faster", async () => {
    const http = serve([
      () => json(200, ticket({ position: 42, eta_seconds: 120, poll_after_ms: 3000 })),
      () => json(200, ticket({ position: 10, eta_seconds: 30, poll_after_ms: 5000 })),
      () => json(200, ticket({ position: 3, eta_seconds: 8, poll_after_ms: 5000 })),
    ]);
    renderRoute(<TicketPage />, at);
    await advance();

    expect(screen.getByTestId('queue-position').textContent).toBe('42');
    expect(screen.getByTestId('queue-eta').textContent).toBe('about 2 minutes');
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('queued');
    expect(screen.getByTestId('sale-stock').textContent).toContain('37 of 100 left');
    expect(screen.getByTestId('queue-announcer').textContent).toContain('number 42 in line');
    const polls = () => http.callsTo('GET', '/api/tickets/t1').length;
    expect(polls()).toBe(1);

    await advance(2999);
    expect(polls()).toBe(1);
    await advance(1);
    expect(polls()).toBe(2);
    expect(screen.getByTestId('queue-position').textContent).toBe('10');
    expect(screen.getByTestId('queue-eta').textContent).toBe('about 30 seconds');

    // The new answer asked for 5 s between polls.
    await advance(4999);
    expect(polls()).toBe(2);
    await advance(1);
    expect(polls()).toBe(3);
    expect(screen.getByTestId('queue-position').textContent).toBe('3');
    const bar = screen.getByRole('progressbar');
    expect(Number(bar.getAttribute('aria-valuenow'))).toBeGreaterThan(80);
  });

  it('says the line is paused while the shop has paused the sale', async () => {
    serve([() => json(200, ticket({ position: 42, eta_seconds: null, paused: true, poll_after_ms: 3000 }))]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('queue-position').textContent).toBe('42');
    expect(screen.getByTestId('queue-eta').textContent).toBe('Paused by the shop: you keep your place');
  });

  it('backs off after errors and recovers', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0);
    const http = serve([
      () => json(200, ticket({ poll_after_ms: 1000 })),
      () => apiError(503, 'service_unavailable', 'The shop is busy.'),
      () => apiError(503, 'service_unavailable', 'The shop is busy.'),
      () => json(200, ticket({ position: 5, poll_after_ms: 1000 })),
    ]);
    renderRoute(<TicketPage />, at);
    await advance();
    const polls = () => http.callsTo('GET', '/api/tickets/t1').length;

    await advance(1000);
    expect(polls()).toBe(2);
    expect(screen.getByTestId('connection-note').textContent).toContain('The shop is busy.');
    // The position stays on screen while the connection is down.
    expect(screen.getByTestId('queue-position').textContent).toBe('42');

    await advance(1999);
    expect(polls()).toBe(2);
    await advance(1);
    expect(polls()).toBe(3);

    await advance(3999);
    expect(polls()).toBe(3);
    await advance(1);
    expect(polls()).toBe(4);
    expect(screen.getByTestId('queue-position').textContent).toBe('5');
    expect(screen.getByTestId('connection-note').textContent?.trim()).toBe('');
  });

  it('remembers the ticket so a reload or the sale page finds it again', async () => {
    serve([() => json(200, ticket({ position: 42 }))]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(ticketForSale('s1')).toEqual({ ticketId: 't1', saleId: 's1', firstPosition: 42 });
  });

  it('moves to the payment view when the ticket is reserved', async () => {
    serve(
      [
        () => json(200, ticket({ poll_after_ms: 1000 })),
        () =>
          json(
            200,
            ticket({
              status: 'reserved',
              position: null,
              reservation: {
                expires_at: '2030-01-01T12:05:03Z',
                payment_intent_id: 'pi_1',
                client_secret: 'pi_1_secret_x',
                amount_cents: 4999,
                currency: 'USD',
              },
            }),
          ),
      ],
      { 'GET /api/config': () => json(200, { stripe_publishable_key: '', stripe_js_url: '' }) },
    );
    renderRoute(<TicketPage />, at);
    await advance();
    await advance(1000);
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('reserved');
    expect(screen.getByTestId('reservation-countdown').textContent).toBe('05:00');
    expect(screen.getByTestId('payment-amount').textContent).toBe('$49.99');
    expect(screen.getByTestId('card-element')).toBeTruthy();
    expect(screen.getByTestId('pay-button')).toBeTruthy();
  });

  it('shows the paid order and stops polling', async () => {
    const http = serve([() => json(200, ticket({ status: 'paid', position: null, order_id: 'o1' }))], {
      'GET /api/orders/o1': () => json(200, order()),
    });
    renderRoute(<TicketPage />, at);
    await advance();
    await advance();
    expect(screen.getByTestId('paid-order-summary').textContent).toContain('o1');
    expect(screen.getByTestId('paid-order-amount').textContent).toBe('$49.99');
    await advance(60_000);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(1);
  });

  it('says what to do next when the sale sold out', async () => {
    serve([() => json(200, ticket({ status: 'sold_out', position: null }))]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('sold-out-message').textContent).toContain('sold before your turn');
    expect(screen.getByRole('link', { name: 'Back to the sale' }).getAttribute('href')).toBe('/sales/s1');
  });

  it('leaves the queue with the Leave button', async () => {
    const http = serve([() => json(200, ticket())], {
      'POST /api/tickets/t1/cancel': () => json(200, ticket({ status: 'cancelled', position: null })),
    });
    renderRoute(<TicketPage />, at);
    await advance();
    fireEvent.click(screen.getByTestId('leave-queue-button'));
    fireEvent.click(screen.getByTestId('leave-queue-confirm'));
    await advance();
    expect(http.callsTo('POST', '/api/tickets/t1/cancel')).toHaveLength(1);
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('cancelled');
    expect(screen.getByTestId('ticket-outcome').dataset.status).toBe('cancelled');
  });

  it("says so when the ticket is not the caller's", async () => {
    serve([() => apiError(404, 'not_found', 'No such ticket.')]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('Ticket not found');
  });
});

/** A stand-in for the browser's EventSource (jsdom has none): the test plays the server. */
class FakeEventSource {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  static opened: FakeEventSource[] = [];
  readyState = FakeEventSource.OPEN;
  onerror: (() => void) | null = null;
  private listeners: Array<(event: MessageEvent<string>) => void> = [];

  constructor(readonly url: string) {
    FakeEventSource.opened.push(this);
  }

  addEventListener(type: string, listener: (event: MessageEvent<string>) => void) {
    if (type === 'ticket') this.listeners.push(listener);
  }

  close() {
    this.readyState = FakeEventSource.CLOSED;
  }

  send(body: object) {
    const event = new MessageEvent('ticket', { data: JSON.stringify(body) });
    this.listeners.forEach((listener) => listener(event));
  }

  fail(closed: boolean) {
    if (closed) this.readyState = FakeEventSource.CLOSED;
    this.onerror?.();
  }
}

describe('queue page with live updates', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:02Z'));
    tokens.set({ access_token: 'a' });
    FakeEventSource.opened = [];
    vi.stubGlobal('EventSource', FakeEventSource);
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('follows the ticket over its event stream with its stream token, and stops polling', async () => {
    const http = serve([() => json(200, ticket({ stream_token: 'tok+1' }))]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(FakeEventSource.opened).toHaveLength(1);
    const stream = FakeEventSource.opened[0];
    expect(stream.url).toBe('/api/tickets/t1/events?stream_token=tok%2B1');

    await act(async () => stream.send(ticket({ position: 7, eta_seconds: 5, stream_token: 'tok+1' })));
    expect(screen.getByTestId('queue-position').textContent).toBe('7');
    await advance(30_000);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(1); // no polls while streaming

    await act(async () => stream.send(ticket({ status: 'abandoned', position: null })));
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('abandoned');
    expect(stream.readyState).toBe(FakeEventSource.CLOSED);
  });

  it('keeps the stream through a dropped connection (the browser resumes it) and polls when it fails', async () => {
    const http = serve([
      () => json(200, ticket({ stream_token: 'tok', poll_after_ms: 2000 })),
      () => json(200, ticket({ position: 3, stream_token: 'tok', poll_after_ms: 2000 })),
    ]);
    renderRoute(<TicketPage />, at);
    await advance();
    const stream = FakeEventSource.opened[0];
    await act(async () => stream.fail(false)); // reconnecting with Last-Event-ID by itself
    await advance(5000);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(1);

    await act(async () => stream.fail(true)); // refused: the browser gives up
    await advance(1999);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(1);
    await advance(1);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(2);
    expect(screen.getByTestId('queue-position').textContent).toBe('3');
    expect(FakeEventSource.opened).toHaveLength(1); // polling from now on
  });
});

describe('ticket page when a payment races the end of its reservation', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:02Z'));
    tokens.set({ access_token: 'a' });
    FakeEventSource.opened = [];
    vi.stubGlobal('EventSource', FakeEventSource);
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  const expired = (over: Partial<Ticket> = {}) => ticket({ status: 'expired', position: null, stream_token: 'tok', ...over });

  it('keeps following an expired ticket whose payment is being checked, and shows the order it became', async () => {
    const http = serve([() => json(200, ticket({ stream_token: 'tok' }))], {
      'GET /api/orders/o1': () => json(200, order()),
    });
    renderRoute(<TicketPage />, at);
    await advance();
    const stream = FakeEventSource.opened[0];
    await act(async () => stream.send(expired({ payment_pending: true })));
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('expired');
    expect(screen.getByTestId('late-payment-pending').textContent).toContain('checking with the bank');
    expect(stream.readyState).toBe(FakeEventSource.OPEN);

    await act(async () => stream.send(ticket({ status: 'paid', position: null, order_id: 'o1' })));
    await advance();
    expect(screen.getByTestId('paid-order-summary').textContent).toContain('o1');
    expect(stream.readyState).toBe(FakeEventSource.CLOSED);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(1);
  });

  it('says a late payment was refunded, and polls an expired ticket until its payment is decided', async () => {
    vi.stubGlobal('EventSource', undefined);
    const http = serve([
      () => json(200, expired({ payment_pending: true, poll_after_ms: null })),
      () => json(200, expired({ refunded: true, poll_after_ms: null })),
    ]);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('late-payment-pending')).toBeTruthy();
    await advance(2000);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(2);
    expect(screen.getByTestId('late-payment-refunded').textContent).toContain('refunded in full');
    expect(screen.queryByText(/Nothing\s+was charged/)).toBeNull();
    await advance(60_000);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(2);
  });
});

describe('queue page whose stream token expires', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:02Z'));
    tokens.set({ access_token: 'a' });
    FakeEventSource.opened = [];
    vi.stubGlobal('EventSource', FakeEventSource);
  });

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('opens the stream again with the fresh token of a poll when a stream that worked is refused', async () => {
    const http = serve([
      () => json(200, ticket({ stream_token: 'old' })),
      () => json(200, ticket({ position: 9, stream_token: 'fresh' })),
    ]);
    renderRoute(<TicketPage />, at);
    await advance();
    const first = FakeEventSource.opened[0];
    await act(async () => first.send(ticket({ position: 12, stream_token: 'old' })));
    // The browser reconnected with the expired token in the URL, and the API said 401.
    await act(async () => first.fail(true));
    await advance();
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(2);
    expect(screen.getByTestId('queue-position').textContent).toBe('9');
    expect(FakeEventSource.opened).toHaveLength(2);
    const second = FakeEventSource.opened[1];
    expect(second.url).toBe('/api/tickets/t1/events?stream_token=fresh');
    expect(second.readyState).toBe(FakeEventSource.OPEN);

    // A fresh stream refused before any event is not a token gone stale: polling from then on.
    await act(async () => second.fail(true));
    await advance(3000);
    expect(FakeEventSource.opened).toHaveLength(2);
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(3);
  });
});

describe('lobby ticket page', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T11:59:50Z'));
    tokens.set({ access_token: 'a' });
  });

  it('waits in the lobby, then shows the drawn place, the outlook and the way to check the draw', async () => {
    installFetch({
      'GET /api/auth/me': () => json(200, customer),
      'GET /api/tickets/t1': [
        () => json(200, ticket({ status: 'lobby', position: null, units_ahead: 40, outlook: 'likely', poll_after_ms: 2000 })),
        () => json(200, ticket({ status: 'queued', position: 140, units_ahead: 139, outlook: 'unlikely', poll_after_ms: 2000 })),
      ],
      'GET /api/sales/s1': () => json(200, sale({ status: 'lobby', lobby_size: 81, stock_available: 100 })),
      'GET /api/products/p1': () => json(200, product),
    });
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('lobby');
    expect(screen.getByTestId('lobby-message').textContent).toBe(
      `You're in: at ${formatTimeOfDay('2030-01-01T12:00:00Z')} everyone in the lobby gets a random place.`,
    );
    expect(screen.getByTestId('lobby-size').textContent).toBe('81 in the lobby');
    expect(screen.getByTestId('ticket-outlook').dataset.outlook).toBe('likely');
    expect(screen.getByTestId('outlook-line').textContent).toContain('likely to get one');
    expect(screen.getByTestId('fairness-link').getAttribute('href')).toBe('/sales/s1/fairness?ticket=t1');

    await advance(2000);
    expect(screen.getByTestId('queue-position').textContent).toBe('140');
    expect(screen.getByTestId('units-ahead').textContent).toBe('139');
    expect(screen.getByTestId('outlook-line').textContent).toContain('unlikely to get one');
    expect(screen.getByTestId('fairness-link').textContent).toBe('How was my place drawn?');
    expect(ticketForSale('s1')?.firstPosition).toBe(140);
  });
});

function fakeStripe() {
  const card = { mount: vi.fn(), destroy: vi.fn(), on: vi.fn() };
  const stripe = {
    elements: vi.fn(() => ({ create: vi.fn(() => card) })),
    createToken: vi.fn(async () => ({ token: { id: 'tok_visa' } })),
    confirmCardPayment: vi.fn(async () => ({ paymentIntent: { status: 'requires_capture' } })),
  };
  window.Stripe = vi.fn(() => stripe as unknown as StripeInstance);
  return stripe;
}

const hold = (over: Partial<Hold> = {}): Hold => ({
  status: 'required',
  payment_intent_id: null,
  client_secret: null,
  amount_cents: 4999,
  currency: 'USD',
  ...over,
});

const entry = (over: Partial<Ticket> = {}) =>
  ticket({ status: 'lobby', position: null, poll_after_ms: 60_000, hold: hold(), ...over });

const held = () =>
  entry({ hold: hold({ status: 'held', payment_intent_id: 'pi_h', client_secret: 'pi_h_secret' }) });

describe('draw entry page', () => {
  const drawSale = sale({ status: 'lobby', mode: 'draw', lobby_opens_at: '2030-01-01T11:00:00Z' });

  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T11:59:50Z'));
    tokens.set({ access_token: 'a' });
  });

  function serveEntry(ticketAnswers: Array<() => Answer>, holdAnswers: Array<() => Answer>, extra: Record<string, () => Answer> = {}) {
    return installFetch({
      'GET /api/auth/me': () => json(200, customer),
      'GET /api/tickets/t1': ticketAnswers,
      'GET /api/sales/s1': () => json(200, drawSale),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/config': () => json(200, { stripe_publishable_key: 'pk_test_1', stripe_js_url: '/js.stripe.com/v3/' }),
      'POST /api/tickets/t1/hold': holdAnswers,
      ...extra,
    });
  }

  it("posts the card token for the hold, then says you're entered with the time of the draw and lets you withdraw", async () => {
    const stripe = fakeStripe();
    const http = serveEntry(
      [() => json(200, entry()), () => json(200, held())],
      [() => json(200, { status: 'requires_capture', requires_action: false, client_secret: 'pi_h_secret', payment_intent_id: 'pi_h' })],
      { 'POST /api/tickets/t1/cancel': () => json(200, ticket({ status: 'cancelled', position: null, hold: hold({ status: 'released' }) })) },
    );
    renderRoute(<TicketPage />, at);
    await advance();
    await advance();
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('Enter the draw');
    expect(screen.getByTestId('draw-hold-view').textContent).toContain('charged only if you are drawn');
    const button = screen.getByTestId('pay-button');
    expect(button.textContent).toBe('Authorise $49.99');

    fireEvent.click(button);
    await advance();
    await advance();
    expect(stripe.createToken).toHaveBeenCalledTimes(1);
    expect(http.callsTo('POST', '/api/tickets/t1/hold')[0].body).toEqual({ card_token: 'tok_visa' });
    expect(stripe.confirmCardPayment).not.toHaveBeenCalled();
    // The answer makes the page look at the ticket again at once: the hold is held.
    expect(http.callsTo('GET', '/api/tickets/t1')).toHaveLength(2);
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe("You're entered in the draw");
    expect(screen.getByTestId('draw-entered-message').textContent).toContain("You're entered");
    expect(screen.getByTestId('draw-time').textContent).toBe(formatTimeOfDay('2030-01-01T12:00:00Z'));
    expect(screen.getByTestId('draw-countdown').textContent).toBe('00:10');

    fireEvent.click(screen.getByTestId('leave-queue-button'));
    fireEvent.click(screen.getByTestId('leave-queue-confirm'));
    await advance();
    expect(http.callsTo('POST', '/api/tickets/t1/cancel')).toHaveLength(1);
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('cancelled');
  });

  it('says a declined card was declined and lets the shopper try another card', async () => {
    const stripe = fakeStripe();
    const http = serveEntry(
      [() => json(200, entry()), () => json(200, entry({ hold: hold({ status: 'failed' }) })), () => json(200, held())],
      [
        () => apiError(402, 'payment_declined', 'Your card was declined.'),
        () => json(200, { status: 'requires_capture', requires_action: false, client_secret: 's', payment_intent_id: 'pi_2' }),
      ],
    );
    renderRoute(<TicketPage />, at);
    await advance();
    await advance();
    fireEvent.click(screen.getByTestId('pay-button'));
    await advance();
    await advance();
    expect(screen.getByTestId('payment-error').textContent).toBe('Your card was declined.');
    expect(screen.getByTestId('hold-declined').textContent).toContain('try another card');
    const again = screen.getByTestId('pay-button');
    expect(again).toHaveProperty('disabled', false);

    fireEvent.click(again);
    await advance();
    await advance();
    expect(stripe.createToken).toHaveBeenCalledTimes(2);
    expect(http.callsTo('POST', '/api/tickets/t1/hold')).toHaveLength(2);
    expect(screen.getByTestId('draw-entered-message').textContent).toContain("You're entered");
  });

  it('finishes 3-D Secure for the hold as a payment does', async () => {
    const stripe = fakeStripe();
    serveEntry(
      [() => json(200, entry()), () => json(200, held())],
      [() => json(200, { status: 'requires_action', requires_action: true, client_secret: 'pi_3_secret', payment_intent_id: 'pi_3' })],
    );
    renderRoute(<TicketPage />, at);
    await advance();
    await advance();
    fireEvent.click(screen.getByTestId('pay-button'));
    await advance();
    await advance();
    expect(stripe.confirmCardPayment).toHaveBeenCalledWith('pi_3_secret');
    expect(screen.getByTestId('draw-entered-message')).toBeTruthy();
  });

  it('after the draw: not selected says the hold was released', async () => {
    serveEntry([() => json(200, ticket({ status: 'not_selected', position: null, hold: hold({ status: 'released' }) }))], []);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('ticket-status').dataset.status).toBe('not_selected');
    expect(screen.getByTestId('draw-not-selected').textContent).toContain('Not selected: your hold was released');
  });

  it('after the draw: a winner sees the order, a failed capture says so', async () => {
    serveEntry(
      [() => json(200, ticket({ status: 'paid', position: null, order_id: 'o1', hold: hold({ status: 'captured' }) }))],
      [],
      { 'GET /api/orders/o1': () => json(200, order()) },
    );
    renderRoute(<TicketPage />, at);
    await advance();
    await advance();
    expect(screen.getByRole('heading', { level: 1 }).textContent).toBe('You won the draw!');
    expect(screen.getByTestId('draw-won').textContent).toContain('you won');
    expect(screen.getByTestId('paid-order-link').getAttribute('href')).toBe('/orders/o1');
    cleanup();

    serveEntry([() => json(200, ticket({ status: 'payment_failed', position: null, hold: hold({ status: 'failed' }) }))], []);
    renderRoute(<TicketPage />, at);
    await advance();
    expect(screen.getByTestId('draw-capture-failed').textContent).toContain('the capture failed');
  });
});
