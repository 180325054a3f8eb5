import { useCallback, useEffect, useRef, useState } from 'react';
import { now } from './clock';

/** The shop clock, re-read on every whole second (so all countdowns tick together). */
export function useNow(enabled = true): number {
  const [current, setCurrent] = useState(now);
  useEffect(() => {
    if (!enabled) return undefined;
    let timer: ReturnType<typeof setTimeout>;
    const tick = () => {
      const t = now();
      setCurrent(t);
      timer = setTimeout(tick, 1000 - (t % 1000) || 1000);
    };
    timer = setTimeout(tick, 1000 - (now() % 1000) || 1000);
    return () => clearTimeout(timer);
  }, [enabled]);
  return current;
}

export interface Resource<T> {
  data: T | undefined;
  error: unknown;
  loading: boolean;
  reload: () => void;
  setData: (data: T) => void;
}

/** Load once per change of `deps`; ignores answers that arrive after the page moved on. */
export function useResource<T>(load: () => Promise<T>, deps: unknown[]): Resource<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [generation, setGeneration] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const reloading = useRef(false);

  useEffect(() => {
    let current = true;
    // A reload keeps what is on screen while it loads; a different resource starts blank.
    const keep = reloading.current;
    reloading.current = false;
    setState((previous) => ({ data: keep ? previous.data : undefined, loading: true }));
    loadRef.current().then(
      (data) => current && setState({ data, loading: false }),
      (error) => current && setState({ error, loading: false }),
    );
    return () => {
      current = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, generation]);

  const reload = useCallback(() => {
    reloading.current = true;
    setGeneration((g) => g + 1);
  }, []);
  const setData = useCallback((data: T) => setState({ data, loading: false }), []);
  return { data: state.data, error: state.error, loading: state.loading, reload, setData };
}

/** Keep the page title in step with what the page shows. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = title ? `${title} · Flash sale` : 'Flash sale';
  }, [title]);
}
