import { useCallback, useEffect, useState, type ReactNode } from 'react';
import type { Page } from '../api/types';
import { ErrorAlert } from './ErrorAlert';
import { Loading } from './Loading';

interface PagedListProps<T> {
  load: (cursor: string | null) => Promise<Page<T>>;
  render: (item: T) => ReactNode;
  keyOf: (item: T) => string;
  empty: ReactNode;
  className?: string;
  testId?: string;
  /** Filter what is shown (e.g. only live sales). */
  filter?: (item: T) => boolean;
}

/** A list of `{items, next_cursor}` pages with a "Show more" button. */
export function PagedList<T>({ load, render, keyOf, empty, className = 'grid', testId, filter }: PagedListProps<T>) {
  const [items, setItems] = useState<T[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [busy, setBusy] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [started, setStarted] = useState(false);

  const fetchPage = useCallback(
    async (from: string | null, replace: boolean) => {
      setBusy(true);
      setError(null);
      try {
        const page = await load(from);
        setItems((previous) => (replace ? page.items : [...previous, ...page.items]));
        setCursor(page.next_cursor);
      } catch (caught) {
        setError(caught);
      } finally {
        setBusy(false);
        setStarted(true);
      }
    },
    [load],
  );

  useEffect(() => {
    void fetchPage(null, true);
  }, [fetchPage]);

  const shown = filter ? items.filter(filter) : items;
  return (
    <div>
      <ErrorAlert error={error} />
      {!started && busy ? <Loading /> : null}
      {started && !shown.length && !error ? <p className="muted">{empty}</p> : null}
      {shown.length ? (
        <ul className={className} data-testid={testId}>
          {shown.map((item) => (
            <li key={keyOf(item)}>{render(item)}</li>
          ))}
        </ul>
      ) : null}
      {cursor ? (
        <button type="button" className="button" disabled={busy} onClick={() => void fetchPage(cursor, false)}>
          {busy ? 'Loading…' : 'Show more'}
        </button>
      ) : null}
    </div>
  );
}
