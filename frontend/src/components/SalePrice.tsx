import type { Product, Sale } from '../api/types';
import { Money } from './Money';

/** A sale's price, with the product's usual price struck through when the sale is cheaper. */
export function SalePrice({
  sale,
  product,
  className = 'price',
  testId,
}: {
  sale: Sale;
  product: Product | null | undefined;
  className?: string;
  testId?: string;
}) {
  return (
    <p className={className}>
      <Money cents={sale.price_cents} currency={sale.currency} testId={testId} />
      {product && product.price_cents > sale.price_cents ? (
        <>
          {' '}
          <s className="muted">
            <Money cents={product.price_cents} currency={product.currency} />
          </s>
        </>
      ) : null}
    </p>
  );
}
