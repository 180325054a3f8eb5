// A lobby or queued ticket's chance to buy, in plain words (shared/API.md "Chance to buy").
import type { Outlook as OutlookValue, Ticket } from '../api/types';

export const OUTLOOK_LABEL: Record<OutlookValue, string> = {
  likely: 'Likely',
  possible: 'Possible',
  unlikely: 'Unlikely',
};

export const OUTLOOK_LINE: Record<OutlookValue, string> = {
  likely: 'You are likely to get one: what shoppers ahead of you asked for, and yours, fits in the units still free.',
  possible:
    'You may get one: it fits only if some shoppers ahead of you do not pay for their reservations and the units come back.',
  unlikely:
    'You are unlikely to get one: shoppers ahead of you asked for more than is left. Units that come back go to the next in line.',
};

export function OutlookNote({ ticket }: { ticket: Ticket }) {
  if (!ticket.outlook) return null;
  return (
    <div className={`outlook outlook-${ticket.outlook}`} data-testid="ticket-outlook" data-outlook={ticket.outlook}>
      <p>
        <strong>Chance to buy: {OUTLOOK_LABEL[ticket.outlook]}</strong>
        {ticket.units_ahead !== undefined ? (
          <span className="muted">
            {' '}
            · <span data-testid="units-ahead">{ticket.units_ahead}</span> {ticket.units_ahead === 1 ? 'unit' : 'units'}{' '}
            asked for ahead of you
          </span>
        ) : null}
      </p>
      <p data-testid="outlook-line">{OUTLOOK_LINE[ticket.outlook]}</p>
    </div>
  );
}
