import { fireEvent, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { tokens } from '../api/client';
import type { SaleStats } from '../api/types';
import { admin, product, sale } from '../test/fixtures';
import { installFetch, json } from '../test/http';
import { advance, renderRoute } from '../test/render';
import { AdminSalePage } from './AdminSalePage';

const stats = (over: Partial<SaleStats> = {}): SaleStats => ({
  stock_total: 100,
  available: 60,
  reserved: 10,
  sold: 30,
  queued: 500,
  tickets_issued: 1000,
  sold_out: 0,
  expired: 2,
  cancelled: 1,
  payment_failed: 0,
  consistent: true,
  ...over,
});

describe('operator sale view', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    tokens.set({ access_token: 'a' });
  });

  it('polls the stats every second and charts admissions per second', async () => {
    const http = installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () => json(200, sale()),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': [
        () => json(200, stats()),
        () => json(200, stats({ tickets_issued: 1250 })),
        () => json(200, stats({ tickets_issued: 1300, available: 59, consistent: false })),
      ],
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('stat-tickets_issued').textContent).toBe('1000');
    expect(screen.getByTestId('stat-consistent').textContent).toBe('Yes');

    await advance(1000);
    expect(screen.getByTestId('stat-tickets_issued').textContent).toBe('1250');
    expect(screen.getByTestId('admissions-rate').textContent).toBe('250.0');

    await advance(1000);
    expect(screen.getByTestId('admissions-rate').textContent).toBe('50.0');
    expect(screen.getByTestId('stat-consistent').textContent).toBe('NO');
    expect(http.callsTo('GET', '/api/admin/sales/s1/stats')).toHaveLength(3);
    expect(screen.getByTestId('admissions-chart').querySelectorAll('rect')).toHaveLength(2);
  });
});

describe('operator sale view of a lobby', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    tokens.set({ access_token: 'a' });
  });

  it('shows the lobby size and the commitment', async () => {
    installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () =>
        json(200, sale({ status: 'lobby', lobby_opens_at: '2030-01-01T11:00:00Z', lobby_size: 812,
          fairness: { algorithm: 'hmac-sha256-v1', commitment: 'ab'.repeat(32) } })),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': () => json(200, stats()),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('admin-lobby-size').textContent).toContain('812 joined');
    expect(screen.getByTestId('admin-commitment').textContent).toBe('ab'.repeat(32));
  });
});

describe("operator sale view's entry requirements", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    tokens.set({ access_token: 'a' });
  });

  it('says who may enter', async () => {
    installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () => json(200, sale({ entry: { verified_email: true, challenge: false, one_card: true } })),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': () => json(200, stats()),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('admin-sale-entry').textContent).toBe('Entry: verified email · one card per person');
  });
});

const report = {
  sale_id: 's1', tickets_issued: 10,
  admissions_per_minute: [{ minute: '2030-01-01T12:00:00Z', admissions: 6 }, { minute: '2030-01-01T12:01:00Z', admissions: 4 }],
  wait_seconds: { decided: 10, p50: 0.25, p95: 2, max: 1.7 },
  outcomes: { paid: 3, sold_out: 5, expired: 1, waiting: 0 },
  reserved: 4, conversion: 0.75, expired: 1, abandoned: 0, cancelled: 0, refunded: 0, paid_orders: 3,
  units_sold: 3, units_returned: 0, rate_limited: 2, challenges_refused: 0,
};

describe("operator sale view's controls", () => {
  beforeEach(() => {
    vi.useFakeTimers();
    tokens.set({ access_token: 'a' });
  });

  const serve = (routes: Record<string, () => ReturnType<typeof json>>) =>
    installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () => json(200, sale({ pacing: { mode: 'operator', per_second: null, reason: null } })),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': () => json(200, stats()),
      'GET /api/admin/sales/s1/report': () => json(200, report),
      ...routes,
    });

  it('pauses and resumes, showing each effect at once', async () => {
    const http = serve({
      'PATCH /api/sales/s1': () => json(200, sale({ paused: true, pacing: { mode: 'operator', per_second: 0, reason: 'paused by the operator' } })),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('sale-pacing').textContent).toBe('No pace limit.');
    fireEvent.click(screen.getByTestId('pause-sale'));
    await advance();
    expect(http.callsTo('PATCH', '/api/sales/s1')[0].body).toEqual({ paused: true });
    expect(screen.getByTestId('sale-pacing').textContent).toContain('Paused');
    expect(screen.getByTestId('resume-sale')).toBeTruthy();
  });

  it('sets a pace and a cap, and shows a pace set by Stripe\'s health', async () => {
    const http = serve({
      'PATCH /api/sales/s1': () =>
        json(200, sale({ outflow_per_second: 5, queue_cap: 1000, pacing: { mode: 'auto', per_second: 2.5, reason: 'Stripe: slow' } })),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    fireEvent.change(screen.getByTestId('pace-input'), { target: { value: '5' } });
    fireEvent.change(screen.getByTestId('cap-input'), { target: { value: '1000' } });
    fireEvent.click(screen.getByTestId('apply-limits'));
    await advance();
    expect(http.callsTo('PATCH', '/api/sales/s1')[0].body).toEqual({ outflow_per_second: 5, queue_cap: 1000 });
    expect(screen.getByTestId('sale-pacing').textContent).toBe("Paced by Stripe's health: 2.5 a second (Stripe: slow).");
  });

  it('shows the report with its chart, and downloads the CSV', async () => {
    const http = serve({});
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('report-conversion').textContent).toBe('75%');
    expect(screen.getByTestId('report-p50').textContent).toBe('0.25 s');
    expect(screen.getByTestId('report-admissions-chart').querySelectorAll('rect')).toHaveLength(2);
    URL.createObjectURL = vi.fn(() => 'blob:report');
    URL.revokeObjectURL = vi.fn();
    const clicked = vi.spyOn(HTMLAnchorElement.prototype, 'click').mockImplementation(() => undefined);
    fireEvent.click(screen.getByTestId('report-csv'));
    await advance();
    expect(http.callsTo('GET', '/api/admin/sales/s1/report').length).toBeGreaterThanOrEqual(2);
    expect(URL.createObjectURL).toHaveBeenCalled();
    expect(clicked).toHaveBeenCalled();
  });

  it('ends after a second click, and cancels only with the sale id typed', async () => {
    const http = serve({
      'POST /api/sales/s1/end': () => json(200, sale({ status: 'ended' })),
      'POST /api/sales/s1/cancel': () => json(200, sale({ status: 'ended' })),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('cancel-sale')).toHaveProperty('disabled', true);
    fireEvent.change(screen.getByTestId('cancel-confirm'), { target: { value: 's' } });
    expect(screen.getByTestId('cancel-sale')).toHaveProperty('disabled', true);
    fireEvent.click(screen.getByTestId('end-sale'));
    expect(http.callsTo('POST', '/api/sales/s1/end')).toHaveLength(0);
    fireEvent.click(screen.getByTestId('end-sale-confirm'));
    await advance();
    expect(http.callsTo('POST', '/api/sales/s1/end')).toHaveLength(1);
    expect(screen.getByTestId('admin-sale-status').textContent).toBe('ended');
    fireEvent.change(screen.getByTestId('cancel-confirm'), { target: { value: 's1' } });
    fireEvent.click(screen.getByTestId('cancel-sale'));
    await advance();
    expect(http.callsTo('POST', '/api/sales/s1/cancel')[0].body).toEqual({ confirm: 's1' });
  });
});

describe('operator sale view of a draw', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    tokens.set({ access_token: 'a' });
  });

  it('shows the holds held, captured, released and failed so far', async () => {
    installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () => json(200, sale({ mode: 'draw' })),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': [
        () => json(200, stats({ draw: { held: 12, captured: 0, released: 0, failed: 1 } })),
        () => json(200, stats({ draw: { held: 0, captured: 3, released: 9, failed: 1 } })),
      ],
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.getByTestId('draw-holds').textContent).toBe('Held 12 · Captured 0 · Released 0 · Failed 1');
    await advance(1000);
    expect(screen.getByTestId('draw-holds').textContent).toBe('Held 0 · Captured 3 · Released 9 · Failed 1');
  });

  it('shows no holds line for a queue sale', async () => {
    installFetch({
      'GET /api/auth/me': () => json(200, admin),
      'GET /api/sales/s1': () => json(200, sale()),
      'GET /api/products/p1': () => json(200, product),
      'GET /api/admin/sales/s1/stats': () => json(200, stats()),
    });
    renderRoute(<AdminSalePage />, { path: '/admin/sales/s1', pattern: '/admin/sales/:saleId' });
    await advance();
    expect(screen.queryByTestId('draw-holds')).toBeNull();
  });
});
