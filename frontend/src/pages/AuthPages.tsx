import { useState, type FormEvent } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { ApiError, type FieldErrors } from '../api/client';
import { useAuth } from '../auth/AuthContext';
import { ErrorAlert } from '../components/ErrorAlert';
import { Field, OtherFieldErrors } from '../components/Field';
import { useTitle } from '../lib/hooks';

/** Only same-site paths are followed after logging in. */
function safeNext(next: string | null): string {
  return next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
}

function useSubmit(action: (form: FormData) => Promise<unknown>) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [fields, setFields] = useState<FieldErrors>({});
  const onSubmit = async (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    setFields({});
    try {
      await action(new FormData(event.currentTarget));
    } catch (caught) {
      setError(caught);
      if (caught instanceof ApiError) setFields(caught.fieldErrors);
    } finally {
      setBusy(false);
    }
  };
  return { busy, error, fields, onSubmit };
}

export function LoginPage() {
  useTitle('Log in');
  const { login } = useAuth();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const next = safeNext(params.get('next'));
  const { busy, error, fields, onSubmit } = useSubmit(async (form) => {
    await login(String(form.get('email') ?? ''), String(form.get('password') ?? ''));
    navigate(next, { replace: true });
  });
  return (
    <section className="page page-narrow">
      <h1>Log in</h1>
      <form onSubmit={onSubmit} noValidate className="form" data-testid="login-form">
        <ErrorAlert error={error} />
        <Field label="Email" name="email" type="email" autoComplete="email" required errors={fields.email} />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="current-password"
          required
          errors={fields.password}
        />
        <OtherFieldErrors errors={fields} known={['email', 'password']} />
        <button type="submit" className="button button-primary" disabled={busy} data-testid="login-submit">
          {busy ? 'Logging in…' : 'Log in'}
        </button>
      </form>
      <p>
        New here? <Link to={`/register${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`}>Create an account</Link>.
      </p>
    </section>
  );
}

export function RegisterPage() {
  useTitle('Sign up');
  const { register } = useAuth();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const next = safeNext(params.get('next'));
  const { busy, error, fields, onSubmit } = useSubmit(async (form) => {
    await register(
      String(form.get('name') ?? ''),
      String(form.get('email') ?? ''),
      String(form.get('password') ?? ''),
    );
    // A link to confirm the address is on its way: say so, then go on where the shopper was going.
    navigate(`/check-email${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`, { replace: true });
  });
  return (
    <section className="page page-narrow">
      <h1>Create an account</h1>
      <form onSubmit={onSubmit} noValidate className="form" data-testid="register-form">
        <ErrorAlert error={error} />
        <Field label="Name" name="name" autoComplete="name" required errors={fields.name} />
        <Field label="Email" name="email" type="email" autoComplete="email" required errors={fields.email} />
        <Field
          label="Password"
          name="password"
          type="password"
          autoComplete="new-password"
          required
          errors={fields.password}
        />
        <OtherFieldErrors errors={fields} known={['name', 'email', 'password']} />
        <button type="submit" className="button button-primary" disabled={busy} data-testid="register-submit">
          {busy ? 'Creating your account…' : 'Sign up'}
        </button>
      </form>
      <p>
        Already have an account? <Link to={`/login${next !== '/' ? `?next=${encodeURIComponent(next)}` : ''}`}>Log in</Link>.
      </p>
    </section>
  );
}
