import type { Order, Product, Sale, Ticket, User } from '../api/types';

export const customer: User = { id: 'u1', email: 'ada@example.com', name: 'Ada', role: 'customer' };
export const admin: User = { id: 'u9', email: 'op@example.com', name: 'Op', role: 'admin' };

export const product: Product = {
  id: 'p1',
  name: 'Limited sneakers',
  description: 'Only a hundred pairs.',
  price_cents: 12000,
  currency: 'USD',
  stock: 100,
  image_url: null,
};

export function sale(over: Partial<Sale> = {}): Sale {
  return {
    id: 's1',
    product_id: 'p1',
    price_cents: 4999,
    currency: 'USD',
    starts_at: '2030-01-01T12:00:00Z',
    ends_at: '2030-01-01T13:00:00Z',
    status: 'open',
    stock_total: 100,
    stock_available: 37,
    queue_length: 1200,
    ...over,
  };
}

export function ticket(over: Partial<Ticket> = {}): Ticket {
  return {
    id: 't1',
    sale_id: 's1',
    quantity: 1,
    status: 'queued',
    position: 42,
    eta_seconds: 120,
    poll_after_ms: 3000,
    reservation: null,
    order_id: null,
    created_at: '2030-01-01T12:00:01Z',
    updated_at: '2030-01-01T12:00:01Z',
    ...over,
  };
}

export function order(over: Partial<Order> = {}): Order {
  return {
    id: 'o1',
    user_id: 'u1',
    items: [{ product_id: 'p1', quantity: 1, unit_price_cents: 4999 }],
    amount_cents: 4999,
    currency: 'USD',
    status: 'paid',
    payment_intent_id: 'pi_1',
    sale_id: 's1',
    ticket_id: 't1',
    created_at: '2030-01-01T12:03:00Z',
    ...over,
  };
}
