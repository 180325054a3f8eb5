// The operator's page: create products and flash sales, and pick a sale to watch live.
import { useId, useState, type FormEvent, type ReactNode } from 'react';
import { Link, useNavigate } from 'react-router';
import { ApiError, type FieldErrors } from '../api/client';
import { catalog, sales } from '../api/shop';
import type { Product, Sale } from '../api/types';
import { ErrorAlert } from '../components/ErrorAlert';
import { Field, OtherFieldErrors } from '../components/Field';
import { PagedList } from '../components/PagedList';
import { formatMoney, parseMoneyToCents } from '../lib/money';
import { useResource, useTitle } from '../lib/hooks';
import { formatDateTime, isoToLocalInput, localInputToIso } from '../lib/time';

function useForm() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const run = async (work: () => Promise<void>, local: FieldErrors = {}) => {
    setError(null);
    setFields(local);
    if (Object.keys(local).length) return;
    setBusy(true);
    try {
      await work();
    } catch (caught) {
      setError(caught);
      if (caught instanceof ApiError) setFields(caught.fieldErrors);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, fields, run };
}

function ControlWithErrors({
  label,
  name,
  errors,
  children,
}: {
  label: string;
  name: string;
  errors?: string[];
  children: (props: { id: string; 'aria-describedby'?: string; 'aria-invalid'?: boolean }) => ReactNode;
}) {
  const id = `${name}-${useId()}`;
  const errorId = `${id}-errors`;
  return (
    <div className={`field${errors?.length ? ' field-invalid' : ''}`}>
      <label htmlFor={id}>{label}</label>
      {children({
        id,
        'aria-describedby': errors?.length ? errorId : undefined,
        'aria-invalid': errors?.length ? true : undefined,
      })}
      {errors?.length ? (
        <ul className="field-errors" id={errorId} data-testid={`field-error-${name}`}>
          {errors.map((message) => (
            <li key={message}>{message}</li>
          ))}
        </ul>
      ) : null}
    </div>
  );
}

function whole(value: FormDataEntryValue | null): number {
  const text = String(value ?? '').trim();
  return /^\d+$/.test(text) ? Number(text) : NaN;
}

function ProductForm({ onCreated }: { onCreated: (product: Product) => void }) {
  const { busy, error, fields, run } = useForm();
  const [created, setCreated] = useState<Product | null>(null);
  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    const currency = String(form.get('currency') ?? '').trim().toUpperCase();
    const price = parseMoneyToCents(String(form.get('price_cents') ?? ''), currency || 'USD');
    const stock = whole(form.get('stock'));
    const local: FieldErrors = {};
    if (price === null) local.price_cents = ['Enter a price such as 19.99.'];
    if (Number.isNaN(stock)) local.stock = ['Enter a whole number.'];
    void run(async () => {
      const product = await catalog.createProduct({
        name: String(form.get('name') ?? '').trim(),
        description: String(form.get('description') ?? '').trim(),
        price_cents: price ?? 0,
        currency,
        stock,
        image_url: String(form.get('image_url') ?? '').trim() || null,
      });
      setCreated(product);
      formElement.reset();
      onCreated(product);
    }, local);
  };
  return (
    <form className="form" onSubmit={submit} noValidate data-testid="product-form">
      <h2>New product</h2>
      <ErrorAlert error={error} />
      <Field label="Name" name="name" required errors={fields.name} />
      <ControlWithErrors label="Description" name="description" errors={fields.description}>
        {(props) => <textarea name="description" rows={3} {...props} />}
      </ControlWithErrors>
      <div className="field-row">
        <Field label="Price" name="price_cents" inputMode="decimal" placeholder="19.99" required errors={fields.price_cents} />
        <Field label="Currency" name="currency" defaultValue="USD" maxLength={3} required errors={fields.currency} />
      </div>
      <Field label="Stock" name="stock" type="number" min={0} inputMode="numeric" defaultValue="100" errors={fields.stock} />
      <Field label="Image URL (optional)" name="image_url" type="url" errors={fields.image_url} />
      <OtherFieldErrors errors={fields} known={['name', 'description', 'price_cents', 'currency', 'stock', 'image_url']} />
      <button type="submit" className="button button-primary" disabled={busy} data-testid="create-product">
        {busy ? 'Creating…' : 'Create product'}
      </button>
      <p role="status" className="muted">
        {created ? `Created “${created.name}”.` : ''}
      </p>
    </form>
  );
}

function SaleForm({ products }: { products: Product[] }) {
  const navigate = useNavigate();
  const { busy, error, fields, run } = useForm();
  const [productId, setProductId] = useState('');
  const product = products.find((p) => p.id === productId) ?? products[0];
  const [defaults] = useState(() => {
    const start = new Date(Date.now() + 2 * 60_000);
    return { start: isoToLocalInput(start), end: isoToLocalInput(new Date(start.getTime() + 60 * 60_000)) };
  });

  const submit = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const currency = product?.currency ?? 'USD';
    const price = parseMoneyToCents(String(form.get('price_cents') ?? ''), currency);
    const startsAt = localInputToIso(String(form.get('starts_at') ?? ''));
    const endsAt = localInputToIso(String(form.get('ends_at') ?? ''));
    const local: FieldErrors = {};
    if (!product) local.product_id = ['Create a product first.'];
    if (price === null) local.price_cents = ['Enter a price such as 9.99.'];
    if (!startsAt) local.starts_at = ['Pick a start time.'];
    if (!endsAt) local.ends_at = ['Pick an end time.'];
    const numbers = {
      stock: whole(form.get('stock')),
      per_user_limit: whole(form.get('per_user_limit')),
      reservation_ttl_seconds: whole(form.get('reservation_ttl_seconds')),
    };
    for (const [name, value] of Object.entries(numbers)) {
      if (Number.isNaN(value)) local[name] = ['Enter a whole number.'];
    }
    void run(async () => {
      const sale = await sales.create({
        product_id: product!.id,
        price_cents: price!,
        starts_at: startsAt!,
        ends_at: endsAt!,
        ...numbers,
        entry: { verified_email: form.get('verified_email') === 'on', one_card: form.get('one_card') === 'on' },
      });
      navigate(`/admin/sales/${encodeURIComponent(sale.id)}`);
    }, local);
  };

  return (
    <form className="form" onSubmit={submit} noValidate data-testid="sale-form">
      <h2>New flash sale</h2>
      <ErrorAlert error={error} />
      <ControlWithErrors label="Product" name="product_id" errors={fields.product_id}>
        {(props) => (
          <select name="product_id" value={product?.id ?? ''} onChange={(e) => setProductId(e.target.value)} {...props}>
            {products.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name} ({formatMoney(p.price_cents, p.currency)}, {p.stock} in stock)
              </option>
            ))}
          </select>
        )}
      </ControlWithErrors>
      <div className="field-row">
        <Field label="Units for sale" name="stock" type="number" min={1} inputMode="numeric" defaultValue="100" errors={fields.stock} />
        <Field
          label={`Sale price (${product?.currency ?? 'USD'})`}
          name="price_cents"
          inputMode="decimal"
          placeholder="9.99"
          required
          errors={fields.price_cents}
        />
      </div>
      <div className="field-row">
        <Field label="Starts (your local time)" name="starts_at" type="datetime-local" defaultValue={defaults.start} required errors={fields.starts_at} />
        <Field label="Ends (your local time)" name="ends_at" type="datetime-local" defaultValue={defaults.end} required errors={fields.ends_at} />
      </div>
      <div className="field-row">
        <Field label="Per-shopper limit" name="per_user_limit" type="number" min={1} inputMode="numeric" defaultValue="1" errors={fields.per_user_limit} />
        <Field
          label="Seconds to pay"
          name="reservation_ttl_seconds"
          type="number"
          min={30}
          inputMode="numeric"
          defaultValue="300"
          errors={fields.reservation_ttl_seconds}
        />
      </div>
      <fieldset className="field-row" data-testid="entry-requirements">
        <legend>Who may enter</legend>
        <label>
          <input type="checkbox" name="verified_email" defaultChecked /> Verified email only
        </label>
        <label>
          <input type="checkbox" name="one_card" defaultChecked /> One card per person
        </label>
      </fieldset>
      <OtherFieldErrors
        errors={fields}
        known={['product_id', 'stock', 'price_cents', 'starts_at', 'ends_at', 'per_user_limit', 'reservation_ttl_seconds', 'entry']}
      />
      <button type="submit" className="button button-primary" disabled={busy || !products.length} data-testid="create-sale">
        {busy ? 'Creating…' : 'Create sale'}
      </button>
    </form>
  );
}

function SaleRow({ sale }: { sale: Sale }) {
  return (
    <article className="order-row">
      <div>
        <Link to={`/admin/sales/${encodeURIComponent(sale.id)}`}>Watch sale {sale.id.slice(0, 10)}</Link>
        <p className="muted">
          {sale.status} · {formatDateTime(sale.starts_at)} · {sale.stock_available}/{sale.stock_total} left ·{' '}
          {sale.queue_length} in line
        </p>
      </div>
    </article>
  );
}

export function AdminPage() {
  useTitle('Operator');
  const products = useResource(async () => {
    const all: Product[] = [];
    let cursor: string | null = null;
    // Operators pick from every product; a few pages is plenty for a flash-sale shop.
    for (let page = 0; page < 10; page += 1) {
      const result = await catalog.products(cursor);
      all.push(...result.items);
      cursor = result.next_cursor;
      if (!cursor) break;
    }
    return all;
  }, []);

  return (
    <section className="page">
      <h1>Operator</h1>
      <div className="two-columns">
        <ProductForm onCreated={products.reload} />
        <SaleForm products={products.data ?? []} />
      </div>
      <section aria-labelledby="admin-sales" className="section">
        <h2 id="admin-sales">Sales</h2>
        <PagedList<Sale>
          load={sales.list}
          keyOf={(sale) => sale.id}
          render={(sale) => <SaleRow sale={sale} />}
          empty="No sales yet."
          className="list"
        />
      </section>
    </section>
  );
}
