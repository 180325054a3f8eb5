import { Link } from 'react-router';
import type { Product } from '../api/types';
import { Money } from './Money';

export function ProductImage({ product }: { product: Product }) {
  return (
    <div className="product-image">
      {product.image_url ? <img src={product.image_url} alt="" loading="lazy" width={400} height={300} /> : null}
    </div>
  );
}

export function ProductCard({ product }: { product: Product }) {
  return (
    <article className="card product-card" data-testid="product-card">
      <ProductImage product={product} />
      <div className="card-body">
        <h3 className="card-title">
          <Link to={`/products/${encodeURIComponent(product.id)}`}>{product.name}</Link>
        </h3>
        <p className="price">
          <Money cents={product.price_cents} currency={product.currency} />
        </p>
        <p className="muted">{product.stock > 0 ? `${product.stock} in stock` : 'Out of stock'}</p>
      </div>
    </article>
  );
}
