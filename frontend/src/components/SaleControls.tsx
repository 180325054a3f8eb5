import { useState } from 'react';
import { sales } from '../api/shop';
import type { Sale, SaleUpdate } from '../api/types';
import { ErrorAlert } from './ErrorAlert';

/** The pace as the operator reads it. */
export function pacingLine(sale: Sale): string {
  if (sale.paused) return 'Paused: shoppers still join, nobody is let through.';
  const pacing = sale.pacing;
  if (!pacing || pacing.per_second === null) return 'No pace limit.';
  const pace = `${pacing.per_second} a second`;
  if (pacing.mode === 'auto') return `Paced by Stripe's health: ${pace}${pacing.reason ? ` (${pacing.reason})` : ''}.`;
  return `Paced by the operator: ${pace}.`;
}

function numberOrNull(text: string): number | null {
  return text.trim() === '' ? null : Number(text);
}

/**
 * The operator's controls of a live sale: pause and resume, pace, cap, end and cancel (the
 * sale's id typed to confirm). Each answers the sale as it is now, shown at once.
 */
export function SaleControls({ sale, onChange }: { sale: Sale; onChange: (sale: Sale) => void }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [pace, setPace] = useState(sale.outflow_per_second?.toString() ?? '');
  const [cap, setCap] = useState(sale.queue_cap?.toString() ?? '');
  const [confirmEnd, setConfirmEnd] = useState(false);
  const [typed, setTyped] = useState('');
  const closed = sale.status === 'ended';

  const act = async (call: () => Promise<Sale>) => {
    setBusy(true);
    setError(null);
    try {
      onChange(await call());
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  };
  const update = (body: SaleUpdate) => act(() => sales.update(sale.id, body));

  return (
    <section className="sale-controls" data-testid="sale-controls">
      <h2>Controls</h2>
      <p data-testid="sale-pacing">{pacingLine(sale)}</p>
      <p>
        <button
          type="button"
          className="button button-primary"
          disabled={busy || closed}
          data-testid={sale.paused ? 'resume-sale' : 'pause-sale'}
          onClick={() => void update({ paused: !sale.paused })}
        >
          {sale.paused ? 'Resume' : 'Pause'}
        </button>
      </p>
      <form
        className="form"
        onSubmit={(event) => {
          event.preventDefault();
          void update({ outflow_per_second: numberOrNull(pace), queue_cap: numberOrNull(cap) });
        }}
      >
        <label className="field">
          Pace (decisions a second, empty: no limit)
          <input type="number" min="0.1" step="any" value={pace} onChange={(e) => setPace(e.target.value)} data-testid="pace-input" />
        </label>
        <label className="field">
          Cap (most shoppers in line, empty: none)
          <input type="number" min="1" step="1" value={cap} onChange={(e) => setCap(e.target.value)} data-testid="cap-input" />
        </label>
        <button type="submit" className="button" disabled={busy || closed} data-testid="apply-limits">
          Apply
        </button>
      </form>
      <p>
        {confirmEnd ? (
          <>
            <button type="button" className="button button-danger" disabled={busy} data-testid="end-sale-confirm" onClick={() => void act(() => sales.end(sale.id))}>
              End now: waiting shoppers get "sold out"
            </button>{' '}
            <button type="button" className="button" onClick={() => setConfirmEnd(false)}>
              Keep it open
            </button>
          </>
        ) : (
          <button type="button" className="button" disabled={busy || closed} data-testid="end-sale" onClick={() => setConfirmEnd(true)}>
            End the sale…
          </button>
        )}
      </p>
      <form
        className="form"
        onSubmit={(event) => {
          event.preventDefault();
          void act(() => sales.cancel(sale.id, typed));
        }}
      >
        <label className="field">
          Cancel the sale for good (every paid order refunded): type <code>{sale.id}</code>
          <input value={typed} onChange={(e) => setTyped(e.target.value)} data-testid="cancel-confirm" />
        </label>
        <button type="submit" className="button button-danger" disabled={busy || typed !== sale.id} data-testid="cancel-sale">
          Cancel the sale
        </button>
      </form>
      <ErrorAlert error={error} testId="controls-error" />
    </section>
  );
}
