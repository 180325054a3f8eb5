import { fireEvent, screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { tokens } from '../api/client';
import { customer } from '../test/fixtures';
import { apiError, installFetch, json } from '../test/http';
import { renderRoute } from '../test/render';
import { RequireAuth } from '../App';
import { LoginPage, RegisterPage } from './AuthPages';

function fill(label: string, value: string) {
  fireEvent.change(screen.getByLabelText(label), { target: { value } });
}

describe('sign up and log in', () => {
  it("shows the API's message and details.fields beside each field", async () => {
    installFetch({
      'POST /api/auth/register': () =>
        apiError(422, 'validation_error', 'The request is not valid; see details.fields.', {
          fields: { email: ['Not a valid email address.'], password: ['Shorter than minimum length 8.'] },
        }),
    });
    renderRoute(<RegisterPage />, { path: '/register', pattern: '/register' });
    fill('Name', 'Ada');
    fill('Email', 'nope');
    fill('Password', 'short');
    fireEvent.click(screen.getByTestId('register-submit'));

    await waitFor(() => expect(screen.getByRole('alert').textContent).toBe('The request is not valid; see details.fields.'));
    const email = screen.getByLabelText('Email');
    expect(email.getAttribute('aria-invalid')).toBe('true');
    const describedBy = email.getAttribute('aria-describedby')!;
    expect(document.getElementById(describedBy)?.textContent).toBe('Not a valid email address.');
    expect(screen.getByTestId('field-error-password').textContent).toBe('Shorter than minimum length 8.');
    expect(screen.getByLabelText('Name').getAttribute('aria-invalid')).toBeNull();
  });

  it('shows a wrong password as a message', async () => {
    installFetch({
      'POST /api/auth/login': () => apiError(401, 'invalid_credentials', 'Wrong email or password.'),
    });
    renderRoute(<LoginPage />, { path: '/login', pattern: '/login' });
    fill('Email', 'ada@example.com');
    fill('Password', 'wrong-password');
    fireEvent.click(screen.getByTestId('login-submit'));
    await waitFor(() => expect(screen.getByRole('alert').textContent).toBe('Wrong email or password.'));
    expect(tokens.access).toBeNull();
  });

  it('keeps the tokens and goes back where the shopper came from', async () => {
    const http = installFetch({
      'POST /api/auth/login': () => json(200, { user: customer, access_token: 'acc', refresh_token: 'ref' }),
    });
    renderRoute(<LoginPage />, { path: '/login?next=%2Fsales%2Fs1', pattern: '/login' });
    fill('Email', 'ada@example.com');
    fill('Password', 'correct horse');
    fireEvent.click(screen.getByTestId('login-submit'));
    await waitFor(() => expect(screen.getByTestId('location').textContent).toBe('/sales/s1'));
    expect(http.calls[0].body).toEqual({ email: 'ada@example.com', password: 'correct horse' });
    // The access token in memory only; the refresh token stays in its HttpOnly cookie.
    expect(tokens.access).toBe('acc');
    expect(JSON.stringify({ ...localStorage })).not.toMatch(/acc|ref/);
  });
});

describe('the session after a reload', () => {
  it('is renewed through the refresh cookie and shows the shopper signed in', async () => {
    localStorage.setItem('flashsale.signed_in', '1');
    const http = installFetch({
      'POST /api/auth/refresh': () => json(200, { access_token: 'renewed', refresh_token: 'r2' }),
      'GET /api/auth/me': ({ headers }) =>
        headers.Authorization === 'Bearer renewed' ? json(200, customer) : apiError(401, 'authorization_required', 'no'),
    });
    renderRoute(<RequireAuth><p>orders</p></RequireAuth>, { path: '/orders', pattern: '/orders' });
    await waitFor(() => expect(screen.getByText('orders')).toBeTruthy());
    expect(http.callsTo('POST', '/api/auth/refresh')).toHaveLength(1);
    expect(tokens.access).toBe('renewed');
  });

  it('goes to the login page when the cookie is refused', async () => {
    localStorage.setItem('flashsale.signed_in', '1');
    installFetch({
      'POST /api/auth/refresh': () => apiError(401, 'token_revoked', 'revoked'),
      'GET /api/auth/me': () => apiError(401, 'authorization_required', 'no'),
    });
    renderRoute(<RequireAuth><p>orders</p></RequireAuth>, { path: '/orders', pattern: '/orders' });
    await waitFor(() => expect(screen.getByTestId('location').textContent).toMatch(/^\/login/));
    expect(tokens.mayResume).toBe(false);
  });
});
