import { describe, expect, it, vi } from 'vitest';
import { apiError, installFetch, json } from '../test/http';
import { api, ApiError, setAuthLostHandler, tokens } from './client';

function unexpected(): never {
  throw new Error('the call should have failed');
}

function asApiError(error: unknown): ApiError {
  expect(error).toBeInstanceOf(ApiError);
  return error as ApiError;
}

describe('API client', () => {
  it('sends the access token and parses JSON', async () => {
    tokens.set({ access_token: 'access-1', refresh_token: 'refresh-1' });
    const http = installFetch({ 'GET /api/auth/me': () => json(200, { id: 'u1' }) });
    await expect(api.get('/api/auth/me')).resolves.toEqual({ id: 'u1' });
    expect(http.calls[0].headers.Authorization).toBe('Bearer access-1');
  });

  it('on 401 refreshes once with the refresh token and retries with the new access token', async () => {
    tokens.set({ access_token: 'old-access', refresh_token: 'refresh-1' });
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
    expect(refreshes[0].headers.Authorization).toBe('Bearer refresh-1');
    expect(http.callsTo('GET', '/api/orders').map((c) => c.headers.Authorization)).toEqual([
      'Bearer old-access',
      'Bearer new-access',
    ]);
    // The old refresh token is spent: the new pair replaces it.
    expect(tokens.access).toBe('new-access');
    expect(tokens.refresh).toBe('refresh-2');
  });

  it('shares one refresh between concurrent 401s (a spent refresh token must never be reused)', async () => {
    tokens.set({ access_token: 'old-access', refresh_token: 'refresh-1' });
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
    tokens.set({ access_token: 'old-access', refresh_token: 'revoked' });
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
    expect(tokens.refresh).toBeNull();
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
