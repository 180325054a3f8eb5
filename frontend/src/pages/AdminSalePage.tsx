import { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { errorMessage } from '../api/client';
import { cachedProduct, sales } from '../api/shop';
import type { DrawStats, Sale, SaleStats } from '../api/types';
import { Money } from '../components/Money';
import { admissionRates, RateChart, type Sample } from '../components/RateChart';
import { SaleControls } from '../components/SaleControls';
import { SaleReportView } from '../components/SaleReportView';
import { useResource, useTitle } from '../lib/hooks';
import { nextPollDelay, useSaleRefresh } from '../lib/polling';
import { entryLine } from './SalePage';
import { formatDateTime } from '../lib/time';

export const STATS_POLL_MS = 1000;
const KEEP_SAMPLES = 61;

const FIGURES: { key: keyof SaleStats; label: string }[] = [
  { key: 'stock_total', label: 'Stock' },
  { key: 'available', label: 'Available' },
  { key: 'reserved', label: 'Reserved' },
  { key: 'sold', label: 'Sold' },
  { key: 'queued', label: 'Queued' },
  { key: 'tickets_issued', label: 'Tickets issued' },
  { key: 'sold_out', label: 'Sold out' },
  { key: 'expired', label: 'Expired' },
  { key: 'cancelled', label: 'Cancelled' },
  { key: 'payment_failed', label: 'Payment failed' },
];

/** A draw sale's holds so far, on one line. */
export function drawLine(draw: DrawStats): string {
  return `Held ${draw.held} · Captured ${draw.captured} · Released ${draw.released} · Failed ${draw.failed}`;
}

export function AdminSalePage() {
  const { saleId = '' } = useParams();
  const polled = useSaleRefresh(saleId, true);
  // A control's answer is shown at once, until the next poll brings the sale as it is then.
  const [changed, setChanged] = useState<{ sale: Sale; over: Sale | undefined } | null>(null);
  const sale = changed && changed.over === polled ? changed.sale : polled;
  const product = useResource(
    () => (sale ? cachedProduct(sale.product_id) : Promise.resolve(undefined)),
    [sale?.product_id],
  );
  const [stats, setStats] = useState<SaleStats | null>(null);
  const [samples, setSamples] = useState<Sample[]>([]);
  const [error, setError] = useState<unknown>(null);
  useTitle('Sale stats');

  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    let failures = 0;
    setSamples([]);
    const poll = async () => {
      try {
        const fresh = await sales.stats(saleId);
        if (stopped) return;
        failures = 0;
        setStats(fresh);
        setError(null);
        setSamples((previous) =>
          [...previous, { at: Date.now(), ticketsIssued: fresh.tickets_issued }].slice(-KEEP_SAMPLES),
        );
      } catch (caught) {
        if (stopped) return;
        failures += 1;
        setError(caught);
      }
      timer = setTimeout(poll, nextPollDelay(STATS_POLL_MS, failures));
    };
    void poll();
    return () => {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
    };
  }, [saleId]);

  return (
    <section className="page">
      <p>
        <Link to="/admin">← Operator</Link>
      </p>
      <h1>Live: {product.data?.name ?? 'flash sale'}</h1>
      {sale ? (
        <p className="muted">
          <Money cents={sale.price_cents} currency={sale.currency} /> · <span data-testid="admin-sale-status">{sale.status}</span> ·{' '}
          {formatDateTime(sale.starts_at)} – {formatDateTime(sale.ends_at)} ·{' '}
          <Link to={`/sales/${encodeURIComponent(saleId)}`}>Shopper's view</Link>
        </p>
      ) : null}
      {sale ? (
        <p className="muted" data-testid="admin-sale-entry">
          {entryLine(sale.entry) ?? 'Entry: open to every signed-in shopper'}
        </p>
      ) : null}
      {sale?.fairness ? (
        <dl className="fairness-table" data-testid="admin-lobby">
          <dt>Lobby</dt>
          <dd data-testid="admin-lobby-size">
            {sale.lobby_opens_at
              ? `${sale.lobby_size ?? 0} joined (opens ${formatDateTime(sale.lobby_opens_at)})`
              : 'none (shoppers queue in arrival order)'}
          </dd>
          <dt>Draw</dt>
          <dd>{sale.fairness.algorithm}</dd>
          <dt>Commitment</dt>
          <dd data-testid="admin-commitment">{sale.fairness.commitment}</dd>
          <dt>Check</dt>
          <dd>
            <Link to={`/sales/${encodeURIComponent(saleId)}/fairness`}>The draw recomputed in the browser</Link>
          </dd>
        </dl>
      ) : null}
      {sale ? <SaleControls key={sale.id} sale={sale} onChange={(fresh) => setChanged({ sale: fresh, over: polled })} /> : null}
      <p className="connection-note" role="status">
        {error ? `${errorMessage(error)} Retrying…` : '\u00a0'}
      </p>
      <dl className="stats-grid" data-testid="sale-stats">
        {FIGURES.map(({ key, label }) => (
          <div key={key} className="stat">
            <dt>{label}</dt>
            <dd data-testid={`stat-${key}`}>{stats ? String(stats[key]) : '—'}</dd>
          </div>
        ))}
        <div className="stat">
          <dt>Consistent</dt>
          <dd
            data-testid="stat-consistent"
            className={stats ? (stats.consistent ? 'ok' : 'bad') : undefined}
          >
            {stats ? (stats.consistent ? 'Yes' : 'NO') : '—'}
          </dd>
        </div>
      </dl>
      {stats?.draw ? (
        <p className="draw-holds" data-testid="draw-holds">
          {drawLine(stats.draw)}
        </p>
      ) : null}
      <RateChart rates={admissionRates(samples)} />
      <SaleReportView saleId={saleId} />
    </section>
  );
}
