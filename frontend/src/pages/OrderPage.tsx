import { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { orders } from '../api/shop';
import { CardPayment } from '../components/CardPayment';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { Money } from '../components/Money';
import { ORDER_STATUS_LABEL, OrderItems } from '../components/OrderItems';
import { useResource, useTitle } from '../lib/hooks';
import { nextPollDelay } from '../lib/polling';
import { formatDateTime } from '../lib/time';

const ORDER_POLL_MS = 1500;

export function OrderPage() {
  const { orderId = '' } = useParams();
  const order = useResource(() => orders.get(orderId), [orderId]);
  const [waiting, setWaiting] = useState(false);
  useTitle('Order');

  // After the card was charged, the webhook marks the order paid: look again until it has.
  const { setData } = order;
  useEffect(() => {
    if (!waiting) return undefined;
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    const poll = async () => {
      try {
        const fresh = await orders.get(orderId);
        if (stopped) return;
        failures = 0;
        setData(fresh);
        if (fresh.status !== 'pending_payment') {
          setWaiting(false);
          return;
        }
      } catch {
        if (stopped) return;
        failures += 1;
      }
      timer = setTimeout(poll, nextPollDelay(ORDER_POLL_MS, failures));
    };
    timer = setTimeout(poll, ORDER_POLL_MS);
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [waiting, orderId, setData]);

  if (!order.data) {
    return (
      <section className="page page-narrow">
        <h1>Order</h1>
        {order.error ? <ErrorAlert error={order.error} /> : <Loading />}
      </section>
    );
  }
  const o = order.data;
  const summary = (
    <>
      <OrderItems order={o} />
      <p className="price-large">
        Total: <Money cents={o.amount_cents} currency={o.currency} testId="order-amount" />
      </p>
      <p className="muted">Placed {formatDateTime(o.created_at)}</p>
    </>
  );
  return (
    <section className="page page-narrow">
      <h1>{o.status === 'paid' ? 'Thank you! Your order is paid' : `Order ${o.id.slice(0, 10)}`}</h1>
      <p>
        <span className={`badge badge-${o.status}`} data-testid="order-status" data-status={o.status}>
          {ORDER_STATUS_LABEL[o.status] ?? o.status}
        </span>
      </p>
      {o.status === 'paid' ? (
        <div data-testid="paid-order-summary">
          <p>
            Order <code data-testid="paid-order-id">{o.id}</code> is paid.
          </p>
          {summary}
        </div>
      ) : (
        summary
      )}
      {o.status === 'pending_payment' ? (
        waiting ? (
          <p className="notice" role="status" data-testid="payment-confirming">
            Payment sent. Waiting for the confirmation…
          </p>
        ) : (
          <CardPayment
            amountCents={o.amount_cents}
            currency={o.currency}
            pay={(token) => orders.pay(o.id, token)}
            onSubmitted={() => setWaiting(true)}
            allowRetryAfterDecline
          />
        )
      ) : null}
      <p>
        <Link to="/orders">All your orders</Link>
      </p>
    </section>
  );
}
