import { formatMoney } from '../lib/money';

export function Money({ cents, currency, testId }: { cents: number; currency: string; testId?: string }) {
  return (
    <span className="money" data-testid={testId}>
      {formatMoney(cents, currency)}
    </span>
  );
}
