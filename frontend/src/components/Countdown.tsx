import { useEffect, useRef } from 'react';
import { useNow } from '../lib/hooks';
import { formatCountdown } from '../lib/time';

interface CountdownProps {
  /** ISO 8601 time to count down to. */
  to: string;
  /** Called once when the time is reached. */
  onDone?: () => void;
  testId?: string;
  label?: string;
}

/** A fixed-width clock counting down to `to` by the shop clock. */
export function Countdown({ to, onDone, testId = 'countdown', label }: CountdownProps) {
  const target = Date.parse(to);
  const current = useNow();
  const remaining = Number.isNaN(target) ? 0 : Math.max(0, target - current);
  const done = remaining <= 0;
  const notified = useRef<string | null>(null);
  const onDoneRef = useRef(onDone);
  onDoneRef.current = onDone;

  useEffect(() => {
    if (done && notified.current !== to) {
      notified.current = to;
      onDoneRef.current?.();
    }
  }, [done, to]);

  return (
    <span
      className="countdown"
      role="timer"
      aria-label={label ? `${label}: ${formatCountdown(remaining)}` : undefined}
      data-testid={testId}
      data-remaining-ms={remaining}
    >
      {formatCountdown(remaining)}
    </span>
  );
}
