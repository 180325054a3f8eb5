// The one door to the HTTP API: relative URLs, JSON bodies, the access token from memory,
// one refresh-and-retry on 401 (through the HttpOnly refresh cookie), and the contract's error
// body turned into an ApiError.
import { observeServerDate } from '../lib/clock';
import type { TokenPair } from './types';

export type FieldErrors = Record<string, string[]>;

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown>;
  readonly retryAfterSeconds: number | null;

  constructor(
    status: number,
    code: string,
    message: string,
    details: Record<string, unknown> = {},
    retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfterSeconds = retryAfterSeconds;
  }

  /** `details.fields` flattened to {field: [messages]}; nested fields become `a.b`. */
  get fieldErrors(): FieldErrors {
    return flattenFieldErrors(this.details.fields);
  }
}

export function flattenFieldErrors(fields: unknown, prefix = ''): FieldErrors {
  const out: FieldErrors = {};
  if (!fields || typeof fields !== 'object') return out;
  for (const [key, value] of Object.entries(fields as Record<string, unknown>)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (typeof value === 'string') out[name] = [value];
    else if (Array.isArray(value) && value.every((v) => typeof v === 'string')) out[name] = value;
    else if (value && typeof value === 'object') Object.assign(out, flattenFieldErrors(value, name));
  }
  return out;
}

/** The message to show a shopper for anything a call may throw. */
export function errorMessage(error: unknown): string {
  if (error instanceof ApiError) return error.message;
  if (error instanceof Error && error.message) return error.message;
  return 'Something went wrong. Please try again.';
}

// No token is ever where a script could read it later: the access token lives in this module's
// memory only, and the refresh token in the `refresh_token` cookie (HttpOnly, Path=/api/auth) that
// login, register and refresh set. A reload renews the access token through that cookie. All
// that storage keeps is whether this browser is signed in (no secret), so an anonymous visitor
// costs no refresh call and other tabs hear of a login or logout.
let accessToken: string | null = null;
const SIGNED_IN_KEY = 'flashsale.signed_in';
// Earlier versions kept both tokens in localStorage: drop them, so none outlives the upgrade
// there (such a browser signs in once more, which sets the cookie).
const LEGACY_KEYS = ['flashsale.access_token', 'flashsale.refresh_token'];
if (typeof localStorage !== 'undefined') LEGACY_KEYS.forEach((key) => localStorage.removeItem(key));

export const tokens = {
  get access(): string | null {
    return accessToken;
  },
  /** Keep a new access token; the refresh token in the body is ignored (the cookie holds it). */
  set(pair: Pick<TokenPair, 'access_token'>): void {
    accessToken = pair.access_token;
    localStorage.setItem(SIGNED_IN_KEY, '1');
  },
  clear(): void {
    accessToken = null;
    localStorage.removeItem(SIGNED_IN_KEY);
  },
  /** Whether this browser signed in, so the refresh cookie may renew the session. */
  get mayResume(): boolean {
    return localStorage.getItem(SIGNED_IN_KEY) === '1';
  },
  /** True when a storage event is about the session (another tab logged in or out). */
  isSessionKey(key: string | null): boolean {
    return key === null || key === SIGNED_IN_KEY;
  },
};

let authLostHandler: () => void = () => {
  window.location.assign('/login');
};

/** What to do once the session cannot be renewed; the app sets a router-aware handler. */
export function setAuthLostHandler(handler: () => void): void {
  authLostHandler = handler;
}

export interface RequestOptions {
  body?: unknown;
  /** Send the access token when there is one (default true). */
  auth?: boolean;
  /** Clear tokens and go to /login when the session cannot be renewed (default true). */
  redirectOnAuthFailure?: boolean;
  signal?: AbortSignal;
  /** The Accept header (default application/json); a body that is not JSON comes back as text. */
  accept?: string;
}

function retryAfter(header: string | null): number | null {
  if (!header) return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - Date.now()) / 1000));
}

async function readBody(response: Response): Promise<unknown> {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function toApiError(response: Response, body: unknown): ApiError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)
    ?.error;
  const after = retryAfter(response.headers.get('Retry-After'));
  if (error && typeof error === 'object') {
    return new ApiError(
      response.status,
      typeof error.code === 'string' ? error.code : 'http_error',
      typeof error.message === 'string' && error.message
        ? error.message
        : `The server answered ${response.status}.`,
      error.details && typeof error.details === 'object' ? (error.details as Record<string, unknown>) : {},
      after,
    );
  }
  return new ApiError(response.status, 'http_error', `The server answered ${response.status}.`, {}, after);
}

async function send(method: string, path: string, options: RequestOptions, access: string | null) {
  const headers: Record<string, string> = { Accept: options.accept ?? 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (access) headers.Authorization = `Bearer ${access}`;
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      // Login, register and logout set or clear the refresh cookie (same origin only).
      credentials: 'same-origin',
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: options.signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === 'AbortError') throw cause;
    throw new ApiError(0, 'network_error', 'Could not reach the shop. Check your connection and try again.');
  }
  observeServerDate(response.headers.get('Date'));
  return response;
}

type RefreshOutcome = 'renewed' | 'refused' | 'unavailable';
let refreshInFlight: Promise<RefreshOutcome> | null = null;

async function refreshOnce(failedAccess: string | null): Promise<RefreshOutcome> {
  // Another call already renewed the access token: use it.
  const current = tokens.access;
  if (current && current !== failedAccess) return 'renewed';
  let response: Response;
  try {
    // No Authorization header: the server takes the HttpOnly cookie, and asks for the
    // X-Requested-With header, which a form on another site cannot send (CSRF).
    response = await fetch('/api/auth/refresh', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { Accept: 'application/json', 'X-Requested-With': 'fetch' },
    });
  } catch {
    return 'unavailable';
  }
  if (response.ok) {
    const pair = (await readBody(response)) as TokenPair | null;
    if (pair?.access_token) {
      tokens.set(pair);
      return 'renewed';
    }
    return 'refused';
  }
  return response.status >= 500 || response.status === 429 ? 'unavailable' : 'refused';
}

/**
 * Renew the access token at most once at a time. The refresh cookie is spent by the call and
 * reusing it revokes the whole family, so concurrent 401s share one refresh (and tabs take
 * turns through the Web Locks API where the browser has it: each then sends the cookie the
 * previous one received). `failedAccess` is null when there is no access token yet (a reload).
 */
export function renewSession(failedAccess: string | null): Promise<RefreshOutcome> {
  if (!refreshInFlight) {
    const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
    const run = () => refreshOnce(failedAccess);
    // The lock's promise settles with what the callback's promise settles with.
    const started: Promise<RefreshOutcome> = locks
      ? (locks.request('flashsale.auth-refresh', run) as unknown as Promise<RefreshOutcome>)
      : run();
    refreshInFlight = started.finally(() => {
      refreshInFlight = null;
    });
  }
  return refreshInFlight;
}

function sessionLost(options: RequestOptions): ApiError {
  tokens.clear();
  if (options.redirectOnAuthFailure !== false) authLostHandler();
  return new ApiError(401, 'session_expired', 'Your session has ended. Please log in again.');
}

function refreshUnavailable(): ApiError {
  return new ApiError(503, 'refresh_unavailable', 'Could not renew your session right now. Please try again.');
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  let access = options.auth === false ? null : tokens.access;
  if (options.auth !== false && !access && tokens.mayResume) {
    // A reload or a new tab: the access token was in memory only; the cookie renews it.
    const outcome = await renewSession(null);
    if (outcome === 'unavailable') throw refreshUnavailable();
    if (outcome === 'refused') tokens.clear();
    access = tokens.access;
  }
  let response = await send(method, path, options, access);

  if (response.status === 401 && access) {
    const outcome = await renewSession(access);
    if (outcome === 'refused') throw sessionLost(options);
    if (outcome === 'unavailable') throw refreshUnavailable();
    response = await send(method, path, options, tokens.access);
    if (response.status === 401) throw sessionLost(options);
  }

  const body = await readBody(response);
  if (!response.ok) throw toApiError(response, body);
  return body as T;
}

export const api = {
  get: <T>(path: string, options?: RequestOptions) => request<T>('GET', path, options),
  post: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('POST', path, { ...options, body }),
  put: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('PUT', path, { ...options, body }),
  patch: <T>(path: string, body?: unknown, options?: RequestOptions) =>
    request<T>('PATCH', path, { ...options, body }),
  delete: <T>(path: string, options?: RequestOptions) => request<T>('DELETE', path, options),
};
