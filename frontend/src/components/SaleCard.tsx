import { Link } from 'react-router';
import { cachedProduct } from '../api/shop';
import type { Sale } from '../api/types';
import { useResource } from '../lib/hooks';
import { formatDateTime } from '../lib/time';
import { SalePrice } from './SalePrice';

export const SALE_STATUS_LABEL: Record<Sale['status'], string> = {
  scheduled: 'Starts soon',
  lobby: 'Lobby open',
  open: 'Open now',
  drawing: 'Drawing the places',
  sold_out: 'Sold out',
  ended: 'Ended',
};

export function SaleCard({ sale }: { sale: Sale }) {
  const product = useResource(() => cachedProduct(sale.product_id), [sale.product_id]);
  const name = product.data?.name ?? 'Flash sale';
  return (
    <article className="card sale-card" data-testid="sale-card">
      <div className="card-body">
        <p className={`badge badge-${sale.status}`}>{SALE_STATUS_LABEL[sale.status] ?? sale.status}</p>
        <h3 className="card-title">
          <Link to={`/sales/${encodeURIComponent(sale.id)}`}>{name}</Link>
        </h3>
        <SalePrice sale={sale} product={product.data} />
        <p className="muted">
          {sale.status === 'scheduled' ? `Starts ${formatDateTime(sale.starts_at)}` : `Ends ${formatDateTime(sale.ends_at)}`}
        </p>
        <p className="muted">
          {sale.stock_available} of {sale.stock_total} left
        </p>
      </div>
    </article>
  );
}
