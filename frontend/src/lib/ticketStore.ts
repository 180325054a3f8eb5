// Where a shopper's place in line is remembered across reloads: the ticket id per sale, and the
// position the ticket first had (the start of the progress bar).
import type { Ticket } from '../api/types';

const KEY = 'flashsale.tickets';

export interface RememberedTicket {
  ticketId: string;
  saleId: string;
  firstPosition: number | null;
}

type Store = Record<string, RememberedTicket>;

function read(): Store {
  try {
    const parsed = JSON.parse(localStorage.getItem(KEY) ?? '{}');
    return parsed && typeof parsed === 'object' ? (parsed as Store) : {};
  } catch {
    return {};
  }
}

function write(store: Store): void {
  try {
    localStorage.setItem(KEY, JSON.stringify(store));
  } catch {
    // Storage full or disabled: the ticket id is still in the URL.
  }
}

export function rememberTicket(ticket: Pick<Ticket, 'id' | 'sale_id' | 'position'>): RememberedTicket {
  const store = read();
  const previous = store[ticket.sale_id];
  const sameTicket = previous?.ticketId === ticket.id;
  const firstPosition = sameTicket && previous.firstPosition !== null ? previous.firstPosition : ticket.position ?? null;
  const entry = { ticketId: ticket.id, saleId: ticket.sale_id, firstPosition: firstPosition ?? null };
  if (!sameTicket || previous.firstPosition !== entry.firstPosition) {
    store[ticket.sale_id] = entry;
    write(store);
  }
  return entry;
}

export function ticketForSale(saleId: string): RememberedTicket | undefined {
  return read()[saleId];
}

export function rememberedTicket(ticketId: string): RememberedTicket | undefined {
  return Object.values(read()).find((entry) => entry.ticketId === ticketId);
}

export function forgetTicket(ticketId: string): void {
  const store = read();
  const next = Object.fromEntries(Object.entries(store).filter(([, entry]) => entry.ticketId !== ticketId));
  if (Object.keys(next).length !== Object.keys(store).length) write(next);
}
