// A stand-in for window.fetch: each test routes "METHOD /path" to an answer and reads the calls.
import { vi } from 'vitest';

export interface Call {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
  credentials: RequestCredentials | undefined;
}

export type Answer = Response | Promise<Response>;
export type Route = (call: Call) => Answer;

export function json(status: number, body?: unknown, headers: Record<string, string> = {}): Response {
  return new Response(body === undefined ? null : JSON.stringify(body), {
    status,
    headers: { 'Content-Type': 'application/json', ...headers },
  });
}

export function apiError(status: number, code: string, message: string, details: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return json(status, { error: { code, message, details } }, headers);
}

/**
 * Install a fake fetch. `routes` maps "GET /api/x" to a function or a list of answers
 * (taken in turn; the last one repeats). Unrouted calls answer 404.
 */
export function installFetch(routes: Record<string, Route | Array<() => Answer>>) {
  const calls: Call[] = [];
  const queues = new Map<string, Array<() => Answer>>();
  const fetchMock = vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
    const url = new URL(String(input), 'http://localhost');
    const method = (init.method ?? 'GET').toUpperCase();
    const headers = Object.fromEntries(Object.entries((init.headers as Record<string, string>) ?? {}));
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
    const call = { method, path: url.pathname + url.search, headers, body, credentials: init.credentials };
    calls.push(call);
    const key = `${method} ${url.pathname}`;
    const route = routes[key];
    if (!route) return apiError(404, 'not_found', `No route for ${key}`);
    if (Array.isArray(route)) {
      if (!queues.has(key)) queues.set(key, [...route]);
      const queue = queues.get(key)!;
      const next = queue.length > 1 ? queue.shift()! : queue[0];
      return next();
    }
    return route(call);
  });
  vi.stubGlobal('fetch', fetchMock);
  return {
    calls,
    callsTo: (method: string, path: string) => calls.filter((c) => c.method === method && c.path === path),
  };
}
