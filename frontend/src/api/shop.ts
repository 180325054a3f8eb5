// One typed function per call of the public contract the pages use.
import { api } from './client';
import type { AltchaChallenge } from '../lib/entryChallenge';
import type {
  AuthSession,
  Cart,
  Checkout,
  FairnessPage,
  MailboxMessage,
  NewProduct,
  NewSale,
  Order,
  Page,
  PaymentAttempt,
  Product,
  PublicConfig,
  Sale,
  SaleReport,
  SaleStats,
  SaleUpdate,
  Ticket,
  User,
  VerificationRequest,
} from './types';

const id = encodeURIComponent;

function withCursor(path: string, cursor?: string | null): string {
  return cursor ? `${path}?cursor=${encodeURIComponent(cursor)}` : path;
}

/** Lists are pages `{items, next_cursor}`; accept a bare array too. */
function asPage<T>(body: Page<T> | T[]): Page<T> {
  return Array.isArray(body) ? { items: body, next_cursor: null } : { items: body.items ?? [], next_cursor: body.next_cursor ?? null };
}

export const auth = {
  register: (body: { email: string; password: string; name: string }) =>
    api.post<AuthSession>('/api/auth/register', body, { auth: false }),
  login: (body: { email: string; password: string }) =>
    api.post<AuthSession>('/api/auth/login', body, { auth: false }),
  logout: () => api.post<null>('/api/auth/logout', undefined, { redirectOnAuthFailure: false }),
  me: () => api.get<User>('/api/auth/me', { redirectOnAuthFailure: false }),
  /** Mail the signed-in account a new verification link. */
  requestVerification: () => api.post<VerificationRequest>('/api/auth/verify-email/request'),
  /** Spend a mailed token (public): the account, now verified. */
  verifyEmail: (token: string) => api.post<User>('/api/auth/verify-email', { token }, { auth: false }),
};

/** Development only: the embedded SMTP sink's messages (404 anywhere else). */
export const devMailbox = {
  list: async () => (await api.get<{ items: MailboxMessage[] }>('/api/dev/mailbox', { auth: false })).items,
};

export const catalog = {
  products: async (cursor?: string | null) =>
    asPage(await api.get<Page<Product> | Product[]>(withCursor('/api/products', cursor))),
  product: (productId: string) => api.get<Product>(`/api/products/${id(productId)}`),
  createProduct: (body: NewProduct) => api.post<Product>('/api/products', body),
};

export const cart = {
  get: () => api.get<Cart>('/api/cart'),
  setQuantity: (productId: string, quantity: number) =>
    api.put<Cart | null>(`/api/cart/items/${id(productId)}`, { quantity }),
  remove: (productId: string) => api.delete<Cart | null>(`/api/cart/items/${id(productId)}`),
  checkout: () => api.post<Checkout>('/api/cart/checkout'),
};

export const orders = {
  list: async (cursor?: string | null) =>
    asPage(await api.get<Page<Order> | Order[]>(withCursor('/api/orders', cursor))),
  get: (orderId: string) => api.get<Order>(`/api/orders/${id(orderId)}`),
  pay: (orderId: string, cardToken: string) =>
    api.post<PaymentAttempt>(`/api/orders/${id(orderId)}/pay`, { card_token: cardToken }),
};

export const sales = {
  list: async (cursor?: string | null) =>
    asPage(await api.get<Page<Sale> | Sale[]>(withCursor('/api/sales', cursor))),
  get: (saleId: string) => api.get<Sale>(`/api/sales/${id(saleId)}`),
  create: (body: NewSale) => api.post<Sale>('/api/sales', body),
  join: (saleId: string, quantity = 1, altcha?: string | null) =>
    api.post<Ticket>(`/api/sales/${id(saleId)}/tickets`, altcha ? { quantity, altcha } : { quantity }),
  /** A proof-of-work challenge for one admission (a sale with entry.challenge). */
  challenge: (saleId: string) => api.get<AltchaChallenge>(`/api/sales/${id(saleId)}/challenge`),
  myTicket: (saleId: string) => api.get<Ticket>(`/api/sales/${id(saleId)}/tickets/mine`),
  stats: (saleId: string) => api.get<SaleStats>(`/api/admin/sales/${id(saleId)}/stats`),
  /** The operator's controls: pause, pace, cap (admin). */
  update: (saleId: string, body: SaleUpdate) => api.patch<Sale>(`/api/sales/${id(saleId)}`, body),
  report: (saleId: string) => api.get<SaleReport>(`/api/admin/sales/${id(saleId)}/report`),
  reportCsv: (saleId: string) =>
    api.get<string>(`/api/admin/sales/${id(saleId)}/report`, { accept: 'text/csv' }),
  end: (saleId: string) => api.post<Sale>(`/api/sales/${id(saleId)}/end`),
  /** Final: every live ticket cancelled, every paid order refunded. */
  cancel: (saleId: string, confirm: string) => api.post<Sale>(`/api/sales/${id(saleId)}/cancel`, { confirm }),
  fairness: (saleId: string, cursor?: string | null, limit = 1000) =>
    api.get<FairnessPage>(
      `/api/sales/${id(saleId)}/fairness?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
      { auth: false },
    ),
};

export const tickets = {
  get: (ticketId: string) => api.get<Ticket>(`/api/tickets/${id(ticketId)}`),
  cancel: (ticketId: string) => api.post<Ticket | null>(`/api/tickets/${id(ticketId)}/cancel`),
  pay: (ticketId: string, cardToken: string) =>
    api.post<PaymentAttempt>(`/api/tickets/${id(ticketId)}/pay`, { card_token: cardToken }),
  /** A draw entry: authorise price × quantity on the card, charged only if the entry is drawn. */
  hold: (ticketId: string, cardToken: string) =>
    api.post<PaymentAttempt>(`/api/tickets/${id(ticketId)}/hold`, { card_token: cardToken }),
};

let configPromise: Promise<PublicConfig> | null = null;

export function publicConfig(): Promise<PublicConfig> {
  configPromise ??= api.get<PublicConfig>('/api/config', { auth: false }).catch((error) => {
    configPromise = null;
    throw error;
  });
  return configPromise;
}

/** Forget the cached configuration (tests). */
export function resetPublicConfig(): void {
  configPromise = null;
}

const productCache = new Map<string, Promise<Product>>();

/** A product, fetched once per page load (sale cards and cart lines share it). */
export function cachedProduct(productId: string): Promise<Product> {
  let product = productCache.get(productId);
  if (!product) {
    product = catalog.product(productId).catch((error) => {
      productCache.delete(productId);
      throw error;
    });
    productCache.set(productId, product);
  }
  return product;
}

export function resetProductCache(): void {
  productCache.clear();
}
