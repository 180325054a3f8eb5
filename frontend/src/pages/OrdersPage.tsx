import { Link } from 'react-router';
import { orders } from '../api/shop';
import type { Order } from '../api/types';
import { Money } from '../components/Money';
import { ORDER_STATUS_LABEL } from '../components/OrderItems';
import { PagedList } from '../components/PagedList';
import { useTitle } from '../lib/hooks';
import { formatDateTime } from '../lib/time';

function OrderRow({ order }: { order: Order }) {
  const units = order.items.reduce((sum, item) => sum + item.quantity, 0);
  return (
    <article className="order-row" data-testid="order-row">
      <div>
        <Link to={`/orders/${encodeURIComponent(order.id)}`}>Order {order.id.slice(0, 10)}</Link>
        <p className="muted">
          {formatDateTime(order.created_at)} · {units} {units === 1 ? 'item' : 'items'}
          {order.sale_id ? ' · flash sale' : ''}
        </p>
      </div>
      <div className="order-row-end">
        <Money cents={order.amount_cents} currency={order.currency} />
        <span className={`badge badge-${order.status}`}>{ORDER_STATUS_LABEL[order.status] ?? order.status}</span>
      </div>
    </article>
  );
}

export function OrdersPage() {
  useTitle('Your orders');
  return (
    <section className="page page-narrow">
      <h1>Your orders</h1>
      <PagedList<Order>
        load={orders.list}
        keyOf={(order) => order.id}
        render={(order) => <OrderRow order={order} />}
        empty="You have no orders yet."
        className="list"
        testId="order-list"
      />
    </section>
  );
}
