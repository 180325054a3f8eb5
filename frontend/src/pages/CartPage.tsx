import { useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { cachedProduct, cart as cartApi } from '../api/shop';
import type { Cart, CartItem } from '../api/types';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { Money } from '../components/Money';
import { useResource, useTitle } from '../lib/hooks';

function CartLine({
  item,
  busy,
  onQuantity,
  onRemove,
}: {
  item: CartItem;
  busy: boolean;
  onQuantity: (quantity: number) => void;
  onRemove: () => void;
}) {
  const product = useResource(() => cachedProduct(item.product_id), [item.product_id]);
  const name = item.name ?? product.data?.name ?? 'Product';
  const unit = item.unit_price_cents ?? item.price_cents ?? product.data?.price_cents;
  const currency = item.currency ?? product.data?.currency ?? 'USD';
  const inputId = `quantity-${item.product_id}`;
  return (
    <li className="cart-line" data-testid="cart-line">
      <div>
        <Link to={`/products/${encodeURIComponent(item.product_id)}`}>{name}</Link>
        <p className="muted">{unit !== undefined ? <Money cents={unit} currency={currency} /> : null} each</p>
      </div>
      <div className="cart-line-actions">
        <label htmlFor={inputId}>Quantity</label>
        <input
          id={inputId}
          type="number"
          inputMode="numeric"
          min={1}
          defaultValue={item.quantity}
          disabled={busy}
          className="input-small"
          onBlur={(event) => {
            const value = Number(event.target.value);
            if (Number.isInteger(value) && value >= 1 && value !== item.quantity) onQuantity(value);
          }}
        />
        <button type="button" className="link-button" disabled={busy} onClick={onRemove} aria-label={`Remove ${name}`}>
          Remove
        </button>
      </div>
    </li>
  );
}

export function CartPage() {
  useTitle('Cart');
  const navigate = useNavigate();
  const cart = useResource(() => cartApi.get(), []);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const act = async (work: () => Promise<Cart | null | void>) => {
    setBusy(true);
    setError(null);
    try {
      await work();
      cart.reload();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };

  const checkout = async () => {
    setBusy(true);
    setError(null);
    try {
      const started = await cartApi.checkout();
      navigate(`/orders/${encodeURIComponent(started.order_id)}`);
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  };

  if (cart.loading && !cart.data) return <Loading />;
  const items = cart.data?.items ?? [];
  const total = cart.data?.amount_cents ?? cart.data?.total_cents;
  return (
    <section className="page page-narrow">
      <h1>Your cart</h1>
      <ErrorAlert error={error ?? cart.error} />
      {items.length ? (
        <>
          <ul className="cart-lines">
            {items.map((item) => (
              <CartLine
                key={item.product_id}
                item={item}
                busy={busy}
                onQuantity={(quantity) => void act(() => cartApi.setQuantity(item.product_id, quantity))}
                onRemove={() => void act(() => cartApi.remove(item.product_id))}
              />
            ))}
          </ul>
          {total !== undefined ? (
            <p className="price-large">
              Total: <Money cents={total} currency={cart.data?.currency ?? 'USD'} testId="cart-total" />
            </p>
          ) : null}
          <button type="button" className="button button-primary" disabled={busy} onClick={checkout} data-testid="checkout-button">
            {busy ? 'Working…' : 'Check out'}
          </button>
        </>
      ) : cart.data ? (
        <p>
          Your cart is empty. <Link to="/">Browse the shop</Link>.
        </p>
      ) : null}
    </section>
  );
}
