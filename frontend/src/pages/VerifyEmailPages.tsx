// Email verification: the "check your email" page after sign-up, the page a mailed link opens,
// and the development mailbox (the embedded SMTP sink's messages) that stands in for an inbox.
import { useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { auth, devMailbox } from '../api/shop';
import type { User } from '../api/types';
import { useAuth } from '../auth/AuthContext';
import { ErrorAlert } from '../components/ErrorAlert';
import { Loading } from '../components/Loading';
import { DevMailboxLink, ResendVerification } from '../components/VerificationPrompt';
import { useResource, useTitle } from '../lib/hooks';

/** Only same-site paths are followed. */
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

export function CheckEmailPage() {
  useTitle('Check your email');
  const { user } = useAuth();
  const [params] = useSearchParams();
  const next = safeNext(params.get('next'));
  return (
    <section className="page page-narrow" data-testid="check-email">
      <h1>Check your email</h1>
      <p>
        We sent a link to <strong>{user?.email ?? 'your address'}</strong>. Open it to confirm the address: some
        sales are open to confirmed accounts only. The link works once, for 24 hours.
      </p>
      <DevMailboxLink />
      {user ? <ResendVerification /> : null}
      <p>
        <Link className="button button-primary" to={next} data-testid="continue-link">
          Continue shopping
        </Link>
      </p>
    </section>
  );
}

export function VerifyEmailPage() {
  useTitle('Confirm your email');
  const [params] = useSearchParams();
  const token = params.get('token') ?? '';
  const { user, reloadUser } = useAuth();
  const [verified, setVerified] = useState<User | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    let current = true;
    if (!token) {
      setError('This link has no token: open the link from the email again.');
      return undefined;
    }
    auth.verifyEmail(token).then(
      (account) => {
        if (!current) return;
        setVerified(account);
      },
      (caught) => {
        if (current) setError(caught);
      },
    );
    return () => {
      current = false;
    };
  }, [token]);
  useEffect(() => {
    // The signed-in shopper's own account: show it verified everywhere at once.
    if (verified && user && user.id === verified.id && !user.email_verified) void reloadUser();
  }, [verified, user, reloadUser]);

  return (
    <section className="page page-narrow">
      <h1>Confirm your email</h1>
      {verified ? (
        <div className="notice" role="status" data-testid="verify-result" data-result="verified">
          <p>
            Thank you: <strong>{verified.email}</strong> is confirmed. You can enter sales open to verified accounts.
          </p>
          <p>
            <Link to="/sales">See the flash sales</Link>
          </p>
        </div>
      ) : error ? (
        <div data-testid="verify-result" data-result="refused">
          <ErrorAlert error={error} testId="verify-error" />
          {user && !user.email_verified ? <ResendVerification /> : null}
        </div>
      ) : (
        <Loading label="Confirming your email…" />
      )}
    </section>
  );
}

/** A same-origin link as a path for the router; anything else stays an outside link. */
function localPath(link: string): string | null {
  try {
    const url = new URL(link);
    return url.origin === window.location.origin || url.pathname === '/verify-email' ? url.pathname + url.search : null;
  } catch {
    return null;
  }
}

const MAILBOX_REFRESH_MS = 2000;

export function DevMailboxPage() {
  useTitle('Development mailbox');
  const messages = useResource(() => devMailbox.list(), []);
  const { reload } = messages;
  useEffect(() => {
    // New mail shows up by itself: the sink is written by a worker a moment after sign-up.
    const timer = setInterval(reload, MAILBOX_REFRESH_MS);
    return () => clearInterval(timer);
  }, [reload]);
  return (
    <section className="page">
      <h1>Development mailbox</h1>
      <p className="muted">
        Every message the shop sent, as the embedded SMTP sink kept it (var/mail/). This page exists in development only.
      </p>
      {messages.error ? (
        <ErrorAlert error={messages.error} />
      ) : !messages.data ? (
        <Loading />
      ) : messages.data.length === 0 ? (
        <p data-testid="mailbox-empty">No mail yet.</p>
      ) : (
        <ul className="mailbox" data-testid="mailbox">
          {messages.data.map((message) => (
            <li key={message.id} className="card" data-testid="mailbox-message">
              <p>
                <strong data-testid="mailbox-subject">{message.subject}</strong>
              </p>
              <p className="muted">
                To {message.to} · {message.date}
              </p>
              {message.links.map((link) => {
                const path = localPath(link);
                return (
                  <p key={link}>
                    {path ? (
                      <Link to={path} data-testid="mailbox-link">
                        {link}
                      </Link>
                    ) : (
                      <a href={link}>{link}</a>
                    )}
                  </p>
                );
              })}
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
