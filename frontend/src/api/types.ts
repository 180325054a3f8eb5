// Shapes of the public HTTP contract (shared/API.md). Times are ISO 8601 UTC strings,
// money is integer minor units plus an ISO currency code.

export type Role = 'customer' | 'admin';

export interface User {
  id: string;
  email: string;
  name: string;
  role: Role;
  /** The owner followed the link mailed to the address (sales may require it). */
  email_verified?: boolean;
}

export interface AuthSession {
  user: User;
  access_token: string;
  refresh_token: string;
}

export interface TokenPair {
  access_token: string;
  refresh_token: string;
}

export interface Product {
  id: string;
  name: string;
  description: string;
  price_cents: number;
  currency: string;
  stock: number;
  image_url: string | null;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface CartItem {
  product_id: string;
  quantity: number;
  // Optional extras a cart line may carry; the page falls back to the product when absent.
  name?: string;
  unit_price_cents?: number;
  price_cents?: number;
  currency?: string;
}

export interface Cart {
  items: CartItem[];
  amount_cents?: number;
  total_cents?: number;
  currency?: string;
}

export interface Checkout {
  order_id: string;
  payment_intent_id: string;
  client_secret: string;
  amount_cents: number;
  currency: string;
}

export type OrderStatus = 'pending_payment' | 'paid' | 'refunded' | 'cancelled';

export interface OrderItem {
  product_id: string;
  quantity: number;
  unit_price_cents: number;
}

export interface Order {
  id: string;
  user_id: string;
  items: OrderItem[];
  amount_cents: number;
  currency: string;
  status: OrderStatus;
  payment_intent_id: string | null;
  sale_id: string | null;
  ticket_id: string | null;
  created_at: string;
}

/** `drawing`: the lobby has closed and its places wait for the beacon round (fairness v2). */
export type SaleStatus = 'scheduled' | 'lobby' | 'open' | 'drawing' | 'sold_out' | 'ended';

/** The public drand beacon round a v2 draw uses (shared/API.md "Verifiable randomness from a
 *  public beacon"); scheme bls-unchained-g1-rfc9380. */
export interface DrandBeacon {
  chain_hash: string;
  /** Hex, 96-byte compressed G2 point. */
  public_key: string;
  period_seconds: number;
  /** Unix seconds. */
  genesis_time: number;
  round: number;
  /** The round announced at creation, when the close was recorded too late for it. */
  round_moved_from?: number;
  /** Hex, 48-byte compressed G1 point; absent until the round is out. */
  signature?: string;
  /** Hex SHA-256 of the signature bytes; absent until the round is out. */
  randomness?: string;
}

/** How the lobby's random order is drawn and the commitment to its seed (shared/API.md). */
export interface SaleFairness {
  algorithm: string;
  commitment: string;
  /** hmac-sha256-drand-v2 only, like the fields below. */
  beacon?: DrandBeacon;
  /** Hex SHA-256 of the lobby's ids sorted ascending, joined by "\n"; once the lobby closes. */
  entries_digest?: string;
  /** ISO 8601 UTC; once the lobby closes. */
  closed_at?: string;
}

export interface Sale {
  id: string;
  product_id: string;
  price_cents: number;
  currency: string;
  starts_at: string;
  ends_at: string;
  status: SaleStatus;
  stock_total: number;
  stock_available: number;
  queue_length: number;
  /** When shoppers may join the lobby; null: no lobby. */
  lobby_opens_at?: string | null;
  /** Tickets that joined the lobby. */
  lobby_size?: number;
  fairness?: SaleFairness | null;
  /** Who may enter (shared/API.md "Entry requirements"). */
  entry?: EntryRequirements;
  /** `draw`: the card is held at entry and charged only if drawn at starts_at. */
  mode?: 'queue' | 'draw';
  /** The operator's controls (shared/API.md "Operator controls"). */
  paused?: boolean;
  outflow_per_second?: number | null;
  queue_cap?: number | null;
  pacing?: SalePacing;
}

export interface SalePacing {
  mode: 'auto' | 'operator';
  /** Most tickets decided a second; null: no limit; 0: paused. */
  per_second: number | null;
  reason: string | null;
}

/** GET /api/admin/sales/<id>/report: how the sale went, from the counters kept as it ran. */
export interface SaleReport {
  sale_id: string;
  tickets_issued: number;
  admissions_per_minute: { minute: string; admissions: number }[];
  wait_seconds: { decided: number; p50: number | null; p95: number | null; max: number | null };
  outcomes: Record<string, number>;
  reserved: number;
  conversion: number | null;
  expired: number;
  abandoned: number;
  cancelled: number;
  refunded: number;
  paid_orders: number;
  units_sold: number;
  units_returned: number;
  rate_limited: number;
  challenges_refused: number;
}

/** What PATCH /api/sales/<id> may change. */
export interface SaleUpdate {
  paused?: boolean;
  outflow_per_second?: number | null;
  queue_cap?: number | null;
}

export interface EntryRequirements {
  verified_email: boolean;
  challenge: boolean;
  one_card: boolean;
}

/** POST /api/auth/verify-email/request: `sending` a new link, or nothing to do. */
export interface VerificationRequest {
  status: 'sending' | 'verified';
}

/** GET /api/dev/mailbox (development only): the embedded SMTP sink's messages, newest first. */
export interface MailboxMessage {
  id: string;
  to: string;
  from: string;
  subject: string;
  date: string;
  text: string;
  links: string[];
}

/** GET /api/sales/<id>/fairness: the draw, and the lobby's ticket ids in pages. */
export interface FairnessPage extends SaleFairness {
  /** Hex; null until the lobby has closed at the start (v2: until the beacon round is out). */
  seed: string | null;
  lobby_size: number;
  entries: string[];
  next_cursor: string | null;
}

export interface NewSale {
  product_id: string;
  stock: number;
  price_cents: number;
  starts_at: string;
  ends_at: string;
  per_user_limit: number;
  reservation_ttl_seconds: number;
  entry?: Partial<EntryRequirements>;
}

export interface NewProduct {
  name: string;
  description: string;
  price_cents: number;
  currency: string;
  stock: number;
  image_url: string | null;
}

export type TicketStatus =
  | 'lobby'
  | 'queued'
  | 'reserved'
  | 'paid'
  | 'sold_out'
  | 'expired'
  | 'cancelled'
  | 'payment_failed'
  | 'abandoned'
  // A draw sale's entry drawn after the last unit: its card hold is released.
  | 'not_selected';

/** Statuses a ticket never leaves (the contract: "every other status is final"). */
export const FINAL_TICKET_STATUSES: readonly TicketStatus[] = [
  'paid',
  'sold_out',
  'expired',
  'cancelled',
  'payment_failed',
  'abandoned',
  'not_selected',
];

export function isFinalTicketStatus(status: TicketStatus): boolean {
  return FINAL_TICKET_STATUSES.includes(status);
}

/**
 * Nothing will change on this ticket any more: a final status, and no late payment still being
 * decided (an `expired` ticket with `payment_pending` may yet become `paid`, or be refunded).
 */
export function isSettledTicket(ticket: Pick<Ticket, 'status' | 'payment_pending'>): boolean {
  return isFinalTicketStatus(ticket.status) && !ticket.payment_pending;
}

/** A lobby or queued ticket's chance to buy (shared/API.md "Chance to buy"). */
export type Outlook = 'likely' | 'possible' | 'unlikely';

export interface Reservation {
  expires_at: string;
  payment_intent_id: string;
  client_secret: string;
  amount_cents: number;
  currency: string;
}

/** A draw sale's entry: its card hold (POST /api/tickets/<id>/hold), charged only if drawn. */
export interface Hold {
  status: 'required' | 'held' | 'failed' | 'released' | 'captured';
  payment_intent_id: string | null;
  client_secret: string | null;
  amount_cents: number;
  currency: string | null;
}

export interface Ticket {
  id: string;
  sale_id: string;
  quantity: number;
  status: TicketStatus;
  position: number | null;
  /** Lobby and queued tickets: units asked for by live tickets ahead. */
  units_ahead?: number;
  outlook?: Outlook;
  eta_seconds: number | null;
  poll_after_ms: number | null;
  /** Opens this ticket's event stream (EventSource cannot send the Authorization header). */
  stream_token?: string;
  /** An `expired` ticket whose payment may still have gone through: paid or refunded next. */
  payment_pending?: boolean;
  /** The shop has paused the sale: admission goes on, nobody is let through; no ETA. */
  paused?: boolean;
  /** Present when a payment that came too late was refunded (true) or is being refunded. */
  refunded?: boolean;
  reservation: Reservation | null;
  /** A draw sale's entry only. */
  hold?: Hold;
  order_id: string | null;
  created_at: string;
  updated_at: string;
}

/** Answer of POST /api/tickets/<id>/pay and POST /api/orders/<id>/pay. */
export interface PaymentAttempt {
  status: string;
  client_secret: string;
  requires_action: boolean;
  payment_intent_id: string;
}

export interface PublicConfig {
  stripe_publishable_key: string;
  stripe_js_url: string;
}

export interface SaleStats {
  stock_total: number;
  available: number;
  reserved: number;
  sold: number;
  queued: number;
  tickets_issued: number;
  sold_out: number;
  expired: number;
  cancelled: number;
  payment_failed: number;
  consistent: boolean;
  /** A draw sale's holds so far (draw sales only). */
  draw?: DrawStats;
}

export interface DrawStats {
  held: number;
  captured: number;
  released: number;
  failed: number;
}
