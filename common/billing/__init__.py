"""Payments: the Stripe gateway, paying a reservation or an order with a card, Stripe's webhook
events applied exactly once in effect, refunds, and the outbox of PaymentIntents to cancel."""
