import { fireEvent, screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import { tokens } from '../api/client';
import { forgetDevMailbox } from '../components/VerificationPrompt';
import { customer } from '../test/fixtures';
import { apiError, installFetch, json } from '../test/http';
import { renderRoute } from '../test/render';
import { RegisterPage } from './AuthPages';
import { CheckEmailPage, DevMailboxPage, VerifyEmailPage } from './VerifyEmailPages';

const unverified = { ...customer, email_verified: false };
const message = {
  id: '01796674556787388974-000001',
  to: 'ada@example.com',
  from: 'Flash Sale <no-reply@flashsale.localhost>',
  subject: 'Confirm your email for Flash Sale',
  date: 'Mon, 07 Dec 2026 20:20:00 -0000',
  text: 'Hello Ada,\n\nhttp://127.0.0.1:8000/verify-email?token=tok-1\n',
  links: ['http://127.0.0.1:8000/verify-email?token=tok-1'],
};

function fill(label: string, value: string) {
  fireEvent.change(screen.getByLabelText(label), { target: { value } });
}

describe('verifying an email', () => {
  beforeEach(() => {
    forgetDevMailbox();
  });

  it('after sign-up says to check the email, and links to the development mailbox when there is one', async () => {
    installFetch({
      'POST /api/auth/register': () => json(201, { user: unverified, access_token: 'acc', refresh_token: 'ref' }),
      'GET /api/dev/mailbox': () => json(200, { items: [message] }),
      'POST /api/auth/verify-email/request': () => json(202, { status: 'sending' }),
    });
    renderRoute(<RegisterPage />, { path: '/register?next=%2Fsales%2Fs1', pattern: '/register' });
    fill('Name', 'Ada');
    fill('Email', 'ada@example.com');
    fill('Password', 'correct horse battery');
    fireEvent.click(screen.getByTestId('register-submit'));
    await waitFor(() => expect(screen.getByTestId('location').textContent).toBe('/check-email?next=%2Fsales%2Fs1'));

    const page = renderRoute(<CheckEmailPage />, { path: '/check-email?next=%2Fsales%2Fs1', pattern: '/check-email' });
    await waitFor(() => expect(page.getByTestId('dev-mailbox-link').getAttribute('href')).toBe('/dev/mailbox'));
    expect(page.getByTestId('continue-link').getAttribute('href')).toBe('/sales/s1');
  });

  it('shows no mailbox link where the shop has none (production)', async () => {
    tokens.set({ access_token: 'a' });
    const http = installFetch({
      'GET /api/auth/me': () => json(200, unverified),
      'GET /api/dev/mailbox': () => apiError(404, 'not_found', 'No such endpoint.'),
    });
    renderRoute(<CheckEmailPage />, { path: '/check-email', pattern: '/check-email' });
    await waitFor(() => expect(screen.getByTestId('resend-verification')).toBeTruthy());
    expect(http.callsTo('GET', '/api/dev/mailbox')).toHaveLength(1);
    expect(screen.queryByTestId('dev-mailbox-link')).toBeNull();
  });

  it('posts the token from the link and shows the account confirmed', async () => {
    const http = installFetch({
      'POST /api/auth/verify-email': () => json(200, { ...customer, email_verified: true }),
    });
    renderRoute(<VerifyEmailPage />, { path: '/verify-email?token=tok-1', pattern: '/verify-email' });
    await waitFor(() => expect(screen.getByTestId('verify-result').dataset.result).toBe('verified'));
    expect(http.callsTo('POST', '/api/auth/verify-email')[0].body).toEqual({ token: 'tok-1' });
    expect(screen.getByTestId('verify-result').textContent).toContain('ada@example.com is confirmed');
  });

  it("shows a used or expired link's refusal, with a way to get a new one", async () => {
    tokens.set({ access_token: 'a' });
    const http = installFetch({
      'GET /api/auth/me': () => json(200, unverified),
      'POST /api/auth/verify-email': () =>
        apiError(400, 'invalid_token', 'This link is not valid: it was used already or has expired.'),
      'POST /api/auth/verify-email/request': () => json(202, { status: 'sending' }),
    });
    renderRoute(<VerifyEmailPage />, { path: '/verify-email?token=old', pattern: '/verify-email' });
    await waitFor(() => expect(screen.getByTestId('verify-error').textContent).toContain('used already or has expired'));
    await waitFor(() => expect(screen.getByTestId('resend-verification')).toBeTruthy());
    fireEvent.click(screen.getByTestId('resend-verification'));
    await waitFor(() => expect(screen.getByTestId('resend-done').textContent).toBe('A new link is on its way.'));
    expect(http.callsTo('POST', '/api/auth/verify-email/request')).toHaveLength(1);
  });

  it("lists the sink's messages with their links as pages of the shop", async () => {
    installFetch({ 'GET /api/dev/mailbox': () => json(200, { items: [message] }) });
    renderRoute(<DevMailboxPage />, { path: '/dev/mailbox', pattern: '/dev/mailbox' });
    await waitFor(() => expect(screen.getByTestId('mailbox-subject').textContent).toBe(message.subject));
    const link = screen.getByTestId('mailbox-link');
    expect(link.getAttribute('href')).toBe('/verify-email?token=tok-1');
    fireEvent.click(link);
    await waitFor(() => expect(screen.getByTestId('location').textContent).toBe('/verify-email?token=tok-1'));
  });
});
