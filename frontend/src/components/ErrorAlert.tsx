import { errorMessage } from '../api/client';

/** The API's `message` (or any error's), announced to screen readers. */
export function ErrorAlert({ error, testId = 'error-message' }: { error: unknown; testId?: string }) {
  if (!error) return null;
  return (
    <p className="alert alert-error" role="alert" data-testid={testId}>
      {typeof error === 'string' ? error : errorMessage(error)}
    </p>
  );
}
