import { cachedProduct } from '../api/shop';
import type { Order, OrderItem } from '../api/types';
import { useResource } from '../lib/hooks';
import { Money } from './Money';

function ItemLine({ item, currency }: { item: OrderItem; currency: string }) {
  const product = useResource(() => cachedProduct(item.product_id), [item.product_id]);
  return (
    <li>
      <span>
        {item.quantity} × {product.data?.name ?? 'Product'}
      </span>{' '}
      <Money cents={item.unit_price_cents * item.quantity} currency={currency} />
    </li>
  );
}

export function OrderItems({ order }: { order: Order }) {
  return (
    <ul className="order-items">
      {order.items.map((item) => (
        <ItemLine key={item.product_id} item={item} currency={order.currency} />
      ))}
    </ul>
  );
}

export const ORDER_STATUS_LABEL: Record<Order['status'], string> = {
  pending_payment: 'Waiting for payment',
  paid: 'Paid',
  refunded: 'Refunded',
  cancelled: 'Cancelled',
};
