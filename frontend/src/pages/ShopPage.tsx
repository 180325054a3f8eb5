import { Link } from 'react-router';
import { catalog, sales } from '../api/shop';
import { PagedList } from '../components/PagedList';
import { ProductCard } from '../components/ProductCard';
import { SaleCard } from '../components/SaleCard';
import { useTitle } from '../lib/hooks';
import type { Product, Sale } from '../api/types';

const liveSale = (sale: Sale) => sale.status === 'open' || sale.status === 'scheduled';

export function ShopPage() {
  useTitle('');
  return (
    <section className="page">
      <h1 className="visually-hidden">Flash sale shop</h1>
      <section aria-labelledby="sales-heading" className="section">
        <div className="section-head">
          <h2 id="sales-heading">Flash sales</h2>
          <Link to="/sales">All sales</Link>
        </div>
        <PagedList<Sale>
          load={sales.list}
          filter={liveSale}
          keyOf={(sale) => sale.id}
          render={(sale) => <SaleCard sale={sale} />}
          empty="No flash sale is running or coming up right now."
          testId="sale-list"
        />
      </section>
      <section aria-labelledby="products-heading" className="section">
        <h2 id="products-heading">Products</h2>
        <PagedList<Product>
          load={catalog.products}
          keyOf={(product) => product.id}
          render={(product) => <ProductCard product={product} />}
          empty="The shop has no products yet."
          testId="product-list"
        />
      </section>
    </section>
  );
}
