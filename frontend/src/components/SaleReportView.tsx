import { useState } from 'react';
import { sales } from '../api/shop';
import type { SaleReport } from '../api/types';
import { useResource } from '../lib/hooks';
import { ErrorAlert } from './ErrorAlert';

const WIDTH = 300;
const HEIGHT = 80;

function seconds(value: number | null): string {
  return value === null ? '—' : `${value} s`;
}

/** The sale's report: admissions per minute, wait, outcomes, and the CSV to download. */
export function SaleReportView({ saleId }: { saleId: string }) {
  const report = useResource<SaleReport>(() => sales.report(saleId), [saleId]);
  const [error, setError] = useState<unknown>(null);

  const download = async () => {
    setError(null);
    try {
      const csv = await sales.reportCsv(saleId);
      const link = document.createElement('a');
      link.href = URL.createObjectURL(new Blob([csv], { type: 'text/csv' }));
      link.download = `sale-${saleId}-report.csv`;
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (caught) {
      setError(caught);
    }
  };

  const data = report.data;
  const minutes = data?.admissions_per_minute ?? [];
  const peak = Math.max(1, ...minutes.map((row) => row.admissions));
  const barWidth = WIDTH / Math.max(1, minutes.length);
  return (
    <section className="sale-report" data-testid="sale-report">
      <h2>Report</h2>
      <p>
        <button type="button" className="button" onClick={report.reload}>
          Refresh
        </button>{' '}
        <button type="button" className="button" data-testid="report-csv" onClick={() => void download()}>
          Download CSV
        </button>
      </p>
      <ErrorAlert error={report.error ?? error} testId="report-error" />
      {data ? (
        <>
          <figure className="chart" data-testid="report-admissions-chart">
            <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} width="100%" height={HEIGHT} preserveAspectRatio="none" role="img" aria-label="Admissions per minute">
              {minutes.map((row, index) => {
                const height = (row.admissions / peak) * HEIGHT;
                return <rect key={row.minute} x={index * barWidth} y={HEIGHT - height} width={Math.max(1, barWidth - 1)} height={height} />;
              })}
            </svg>
            <figcaption>Admissions per minute (peak {peak})</figcaption>
          </figure>
          <dl className="stats-grid">
            <div className="stat"><dt>Wait p50</dt><dd data-testid="report-p50">{seconds(data.wait_seconds.p50)}</dd></div>
            <div className="stat"><dt>Wait p95</dt><dd>{seconds(data.wait_seconds.p95)}</dd></div>
            <div className="stat"><dt>Longest wait</dt><dd>{seconds(data.wait_seconds.max)}</dd></div>
            <div className="stat">
              <dt>Reserved → paid</dt>
              <dd data-testid="report-conversion">{data.conversion === null ? '—' : `${Math.round(data.conversion * 100)}%`}</dd>
            </div>
            <div className="stat"><dt>Refunded</dt><dd>{data.refunded}</dd></div>
            <div className="stat"><dt>Units returned</dt><dd>{data.units_returned}</dd></div>
            <div className="stat"><dt>429s</dt><dd>{data.rate_limited}</dd></div>
            <div className="stat"><dt>Refused challenges</dt><dd>{data.challenges_refused}</dd></div>
          </dl>
          <dl className="stats-grid" data-testid="report-outcomes">
            {Object.entries(data.outcomes).map(([status, count]) => (
              <div key={status} className="stat">
                <dt>{status.replace('_', ' ')}</dt>
                <dd>{count}</dd>
              </div>
            ))}
          </dl>
        </>
      ) : null}
    </section>
  );
}
