import { useState, type FormEvent } from 'react';
import { Link, useLocation, useParams } from 'react-router';
import { ApiError, type FieldErrors } from '../api/client';
import { cart, catalog } from '../api/shop';
import { useAuth } from '../auth/AuthContext';
import { loginPath } from '../lib/navigation';
import { ErrorAlert } from '../components/ErrorAlert';
import { Field } from '../components/Field';
import { Loading } from '../components/Loading';
import { Money } from '../components/Money';
import { ProductImage } from '../components/ProductCard';
import { useResource, useTitle } from '../lib/hooks';

export function ProductPage() {
  const { productId = '' } = useParams();
  const product = useResource(() => catalog.product(productId), [productId]);
  const { user } = useAuth();
  const location = useLocation();
  const [quantity, setQuantity] = useState('1');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const [added, setAdded] = useState<number | null>(null);
  useTitle(product.data?.name ?? 'Product');

  if (product.loading && !product.data) return <Loading />;
  if (!product.data) {
    return (
      <section className="page">
        <h1>Product</h1>
        <ErrorAlert error={product.error} />
        <Link to="/">Back to the shop</Link>
      </section>
    );
  }
  const p = product.data;

  const onSubmit = async (event: FormEvent) => {
    event.preventDefault();
    const count = Number(quantity);
    if (!Number.isInteger(count) || count < 1) {
      setFields({ quantity: ['Enter a whole number of at least 1.'] });
      return;
    }
    setBusy(true);
    setError(null);
    setFields({});
    setAdded(null);
    try {
      await cart.setQuantity(p.id, count);
      setAdded(count);
    } catch (caught) {
      setError(caught);
      if (caught instanceof ApiError) setFields(caught.fieldErrors);
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="page product-page">
      <ProductImage product={p} />
      <div>
        <h1>{p.name}</h1>
        <p className="price price-large">
          <Money cents={p.price_cents} currency={p.currency} testId="product-price" />
        </p>
        <p>{p.description}</p>
        <p className="muted">{p.stock > 0 ? `${p.stock} in stock` : 'Out of stock'}</p>
        {user ? (
          <form onSubmit={onSubmit} className="form form-inline" noValidate>
            <ErrorAlert error={error} />
            <Field
              label="Quantity"
              name="quantity"
              type="number"
              inputMode="numeric"
              min={1}
              max={Math.max(1, p.stock)}
              value={quantity}
              onChange={(event) => setQuantity(event.target.value)}
              errors={fields.quantity}
            />
            <button type="submit" className="button button-primary" disabled={busy || p.stock < 1} data-testid="add-to-cart">
              {busy ? 'Adding…' : 'Put in cart'}
            </button>
            <p role="status" className="muted">
              {added ? (
                <>
                  {added} in your cart. <Link to="/cart">Go to cart</Link>
                </>
              ) : null}
            </p>
          </form>
        ) : (
          <p>
            <Link to={loginPath(location)}>Log in</Link> to buy.
          </p>
        )}
      </div>
    </section>
  );
}
