import { sales } from '../api/shop';
import type { Sale } from '../api/types';
import { PagedList } from '../components/PagedList';
import { SaleCard } from '../components/SaleCard';
import { useTitle } from '../lib/hooks';

export function SalesPage() {
  useTitle('Flash sales');
  return (
    <section className="page">
      <h1>Flash sales</h1>
      <PagedList<Sale>
        load={sales.list}
        keyOf={(sale) => sale.id}
        render={(sale) => <SaleCard sale={sale} />}
        empty="There are no flash sales yet."
        testId="sale-list"
      />
    </section>
  );
}
