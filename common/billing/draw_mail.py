"""Each entrant of a finished draw learns its result by mail: won (with the order), not
selected (the hold released), or a failed capture. Sent from a task after the walk, so mail
never slows the walk; at least once per entrant (the sale's mailed set is written after each
message is handed to SMTP: a task killed between the two may send one twice).
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import redis
from pymongo.database import Database

from common.flash_sale import sale_keys
from common.flash_sale.tickets import TicketStatus
from common.platform.mail import send_message

RESULTS = frozenset({TicketStatus.PAID, TicketStatus.NOT_SELECTED, TicketStatus.PAYMENT_FAILED})


def result_message(*, to: str, ticket: dict[str, str], link: str, sender: str) -> EmailMessage:
    amount = int(ticket.get("hold_amount_cents") or 0) / 100
    money = f"{amount:.2f} {ticket.get('hold_currency') or ''}".strip()
    status = ticket["status"]
    message = EmailMessage()
    message["From"], message["To"] = sender, to
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="flashsale.localhost")
    if status == TicketStatus.PAID:
        message["Subject"] = "You were drawn: your order is confirmed"
        body = (f"Your entry was drawn and your card was charged {money}.\n"
                f"Order: {ticket.get('order_id')}\n")
    elif status == TicketStatus.NOT_SELECTED:
        message["Subject"] = "The draw: not selected this time"
        body = (f"Every unit went to entries drawn before yours. Your card was not charged: "
                f"the hold of {money} has been released.\n")
    else:
        message["Subject"] = "The draw: your card could not be charged"
        body = ("Your entry was drawn, but the card hold could not be charged (it had expired or "
                "was cancelled), so the unit went to the next entry. Nothing was charged.\n")
    message.set_content(body + f"\nYour entry: {link}\n")
    return message


def send_results(redis_client: redis.Redis, db: Database, sale_id: str, *, smtp_url: str | None,
                 sender: str, public_url: str, limit: int = 500) -> int:
    """Mail up to `limit` entrants of the sale's draw whose result is final and not mailed yet;
    returns how many were mailed now (0: nothing left). An SMTP error propagates (the task
    retries: those mailed so far are not mailed again)."""
    order = [str(t) for t in redis_client.lrange(sale_keys.draw_order_key(sale_id), 0, -1)]
    mailed = {str(t) for t in redis_client.smembers(sale_keys.draw_mailed_key(sale_id))}
    sent = 0
    for ticket_id in order:
        if sent >= limit:
            break
        if ticket_id in mailed:
            continue
        ticket: dict[str, Any] = redis_client.hgetall(sale_keys.ticket_key(sale_id, ticket_id))
        if ticket.get("status") not in RESULTS:
            continue
        user = db.users.find_one({"_id": ticket.get("user_id")}, {"email": 1})
        if user and user.get("email"):
            send_message(smtp_url, result_message(
                to=user["email"], ticket=ticket, sender=sender,
                link=f"{public_url.rstrip('/')}/tickets/{ticket_id}"))
            sent += 1
        redis_client.sadd(sale_keys.draw_mailed_key(sale_id), ticket_id)
    return sent
