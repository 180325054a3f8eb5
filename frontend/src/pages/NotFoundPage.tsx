import { Link } from 'react-router';
import { useTitle } from '../lib/hooks';

export function NotFoundPage() {
  useTitle('Not found');
  return (
    <section className="page">
      <h1>Page not found</h1>
      <p>
        There is nothing at this address. <Link to="/">Back to the shop</Link>.
      </p>
    </section>
  );
}
