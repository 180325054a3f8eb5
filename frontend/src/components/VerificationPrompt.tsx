// "Check your email": the resend button, and in development a link to the embedded mailbox.
import { useEffect, useState } from 'react';
import { Link } from 'react-router';
import { auth, devMailbox } from '../api/shop';
import { ErrorAlert } from './ErrorAlert';

let mailboxProbe: Promise<boolean> | null = null;

/** Whether this shop has the development mailbox (asked once per page load; 404 in production). */
export function useDevMailbox(): boolean {
  const [available, setAvailable] = useState(false);
  useEffect(() => {
    let current = true;
    mailboxProbe ??= devMailbox.list().then(
      () => true,
      () => false,
    );
    void mailboxProbe.then((found) => {
      if (current) setAvailable(found);
    });
    return () => {
      current = false;
    };
  }, []);
  return available;
}

/** For tests: forget what the last probe found. */
export function forgetDevMailbox(): void {
  mailboxProbe = null;
}

export function DevMailboxLink() {
  const available = useDevMailbox();
  if (!available) return null;
  return (
    <p className="muted" data-testid="dev-mailbox-notice">
      Developing locally? Mail goes to the embedded SMTP sink:{' '}
      <Link to="/dev/mailbox" data-testid="dev-mailbox-link">
        open the development mailbox
      </Link>
      .
    </p>
  );
}

/** Mail the signed-in account a new link; shows what happened. */
export function ResendVerification() {
  const [state, setState] = useState<'idle' | 'sending' | 'sent' | 'verified'>('idle');
  const [error, setError] = useState<unknown>(null);
  const resend = async () => {
    setState('sending');
    setError(null);
    try {
      const answer = await auth.requestVerification();
      setState(answer.status === 'verified' ? 'verified' : 'sent');
    } catch (caught) {
      setState('idle');
      setError(caught);
    }
  };
  return (
    <>
      <button
        type="button"
        className="button"
        onClick={resend}
        disabled={state === 'sending'}
        data-testid="resend-verification"
      >
        {state === 'sending' ? 'Sending…' : 'Send the link again'}
      </button>
      {state === 'sent' ? (
        <p className="muted" role="status" data-testid="resend-done">
          A new link is on its way.
        </p>
      ) : null}
      {state === 'verified' ? (
        <p className="muted" role="status" data-testid="resend-done">
          Your email is already confirmed.
        </p>
      ) : null}
      <ErrorAlert error={error} testId="resend-error" />
    </>
  );
}
