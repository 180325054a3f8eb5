import { describe, expect, it, vi } from 'vitest';
import { apiError, installFetch, json } from '../test/http';
import { api, ApiError, renewSession, setAuthLostHandler, tokens } from './client';

function unexpected(): never {
  throw new Error('the call should have failed');
}

function asApiError(error: unknown): ApiError {
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe('API client', () => {
  it('sends the access token and parses JSON', async () => {
    tokens.set({ access_token: 'access-1' });
    const http = installFetch({ 'GET /api/auth/me': () => json(200, { id: 'u1' }) });
    await expect(api.get('/api/auth/me')).resolves.toEqual({ id: 'u1' });
    expect(http.calls[0].headers.Authorization).toBe('Bearer access-1');
  });

  it('on 401 refreshes once through the refresh cookie and retries with the new access token', async () => {
    tokens.set({ access_token: 'old-access' });
    const http = installFetch({
      'GET /api/orders': ({ headers }) =>
        headers.Authorization === 'Bearer new-access'
          ? json(200, { items: [], next_cursor: null })
          : apiError(401, 'token_expired', 'Token has expired'),
      'POST /api/auth/refresh': () => json(200, { access_token: 'new-access', refresh_token: 'refresh-2' }),
    });
    await expect(api.get('/api/orders')).resolves.toEqual({ items: [], next_cursor: null });
    const refreshes = http.callsTo('POST', '/api/auth/refresh');
    expect(refreshes).toHaveLength(1);
    // The HttpOnly cookie carries the refresh token; the custom header is the CSRF guard.
    expect(refreshes[0].headers.Authorization).toBeUndefined();
    expect(refreshes[0].headers['X-Requested-With']).toBe('fetch');
    expect(refreshes[0].credentials).toBe('same-origin');
    expect(http.callsTo('GET', '/api/orders').map((c) => c.headers.Authorization)).toEqual([
      'Bearer old-access',
      'Bearer new-access',
    ]);
    expect(tokens.access).toBe('new-access');
  });

  it('keeps no token where a script could read it later', async () => {
    installFetch({
      'POST /api/auth/login': () => json(200, { user: { id: 'u1' }, access_token: 'access-1', refresh_token: 'refresh-1' }),
      'POST /api/auth/refresh': () => json(200, { access_token: 'access-2', refresh_token: 'refresh-2' }),
    });
    const session = await api.post<{ access_token: string; refresh_token: string }>('/api/auth/login', {}, { auth: false });
    tokens.set(session);
    await renewSession('access-1');
    expect(tokens.access).toBe('access-2');
    const stored = JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie;
    for (const token of ['access-1', 'refresh-1', 'access-2', 'refresh-2']) expect(stored).not.toContain(token);
  });

  it('drops the tokens earlier versions left in localStorage', async () => {
    localStorage.setItem('flashsale.refresh_token', 'old-refresh');
    localStorage.setItem('flashsale.access_token', 'old-access');
    vi.resetModules();
    await import('./client');
    expect(localStorage.getItem('flashsale.refresh_token')).toBeNull();
    expect(localStorage.getItem('flashsale.access_token')).toBeNull();
  });

  it('after a reload renews the in-memory access token through the cookie before the call', async () => {
    // A fresh page: no access token in memory, but this browser signed in before.
    localStorage.setItem('flashsale.signed_in', '1');
    const http = installFetch({
      'POST /api/auth/refresh': () => json(200, { access_token: 'renewed', refresh_token: 'r2' }),
      'GET /api/orders': ({ headers }) =>
        headers.Authorization === 'Bearer renewed' ? json(200, { items: [] }) : apiError(401, 'authorization_required', 'no'),
    });
    await expect(api.get('/api/orders')).resolves.toEqual({ items: [] });
    expect(http.calls.map((c) => `${c.method} ${c.path}`)).toEqual(['POST /api/auth/refresh', 'GET /api/orders']);
    expect(http.calls[0].credentials).toBe('same-origin');
  });

  it('makes no refresh call for a visitor who never signed in', async () => {
    const http = installFetch({ 'GET /api/products': () => json(200, { items: [], next_cursor: null }) });
    await api.get('/api/products');
    expect(http.callsTo('POST', '/api/auth/refresh')).toHaveLength(0);
    expect(http.calls[0].headers.Authorization).toBeUndefined();
  });

  it('shares one refresh between concurrent 401s (a spent refresh token must never be reused)', async () => {
    tokens.set({ access_token: 'old-access' });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const http = installFetch({
      'GET /api/cart': ({ headers }) =>
        headers.Authorization === 'Bearer new-access' ? json(200, { items: [] }) : apiError(401, 'token_expired', 'expired'),
      'POST /api/auth/refresh': async () => {
        await gate;
        return json(200, { access_token: 'new-access', refresh_token: 'refresh-2' });
      },
    });
    const all = Promise.all([api.get('/api/cart'), api.get('/api/cart'), api.get('/api/cart')]);
    await new Promise((resolve) => setTimeout(resolve, 0));
    release();
    await expect(all).resolves.toHaveLength(3);
    expect(http.callsTo('POST', '/api/auth/refresh')).toHaveLength(1);
  });

  it('clears the tokens and hands over to the login redirect when the refresh is refused', async () => {
    tokens.set({ access_token: 'old-access' });
    expect(tokens.mayResume).toBe(true);
    const lost = vi.fn();
    setAuthLostHandler(lost);
    installFetch({
      'GET /api/orders': () => apiError(401, 'token_expired', 'expired'),
      'POST /api/auth/refresh': () => apiError(401, 'token_revoked', 'Token has been revoked'),
    });
    const error = await api.get('/api/orders').then(unexpected, asApiError);
    expect(error).toBeInstanceOf(ApiError);
    expect(error.code).toBe('session_expired');
    expect(lost).toHaveBeenCalledTimes(1);
    expect(tokens.access).toBeNull();
    expect(tokens.mayResume).toBe(false);
  });

  it('does not refresh for calls made without a token (a failed login is just an error)', async () => {
    const http = installFetch({
      'POST /api/auth/login': () => apiError(401, 'invalid_credentials', 'Wrong email or password.'),
    });
    const error = await api.post('/api/auth/login', { email: 'a@b.c', password: 'x' }, { auth: false }).then(unexpected, asApiError);
    expect(error.message).toBe('Wrong email or password.');
    expect(http.callsTo('POST', '/api/auth/refresh')).toHaveLength(0);
  });

  it("turns the contract's error body into an ApiError with field errors and Retry-After", async () => {
    installFetch({
      'POST /api/sales/s1/tickets': () =>
        apiError(429, 'rate_limited', 'Slow down.', {}, { 'Retry-After': '7' }),
      'POST /api/products': () =>
        apiError(422, 'validation_error', 'The request is not valid; see details.fields.', {
          fields: { name: ['Missing data for required field.'], price_cents: ['Must be at least 1.'] },
        }),
    });
    const limited = await api.post('/api/sales/s1/tickets', { quantity: 1 }).then(unexpected, asApiError);
    expect(limited).toMatchObject({ status: 429, code: 'rate_limited', message: 'Slow down.', retryAfterSeconds: 7 });
    const invalid = await api.post('/api/products', {}).then(unexpected, asApiError);
    expect(invalid.fieldErrors).toEqual({
      name: ['Missing data for required field.'],
      price_cents: ['Must be at least 1.'],
    });
  });

  it('reports an unreachable server as a network error', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    await expect(api.get('/api/products')).rejects.toMatchObject({ code: 'network_error', status: 0 });
  });
});
