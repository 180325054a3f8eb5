import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from '../api/client';
import type { PaymentAttempt } from '../api/types';
import type { StripeInstance } from '../lib/stripe';
import { installFetch, json } from '../test/http';
import { CardPayment } from './CardPayment';

function fakeStripe() {
  const card = {
    mount: vi.fn((target: HTMLElement) => {
      const input = document.createElement('input');
      input.setAttribute('aria-label', 'Card number');
      target.appendChild(input);
    }),
    destroy: vi.fn(),
    on: vi.fn(),
  };
  const stripe = {
    elements: vi.fn(() => ({ create: vi.fn(() => card) })),
    createToken: vi.fn(async () => ({ token: { id: 'tok_visa' } })),
    confirmCardPayment: vi.fn(async () => ({ paymentIntent: { status: 'succeeded' } })),
  };
  window.Stripe = vi.fn(() => stripe as unknown as StripeInstance);
  return { stripe, card };
}

const attempt = (over: Partial<PaymentAttempt> = {}): PaymentAttempt => ({
  status: 'succeeded',
  requires_action: false,
  client_secret: 'pi_1_secret_abc',
  payment_intent_id: 'pi_1',
  ...over,
});

describe('card payment', () => {
  beforeEach(() => {
    installFetch({
      'GET /api/config': () =>
        json(200, { stripe_publishable_key: 'pk_test_123', stripe_js_url: 'http://127.0.0.1:8420/js.stripe.com/v3/' }),
    });
  });

  it('mounts the card element from the configured key and pays: token → pay → 3-D Secure', async () => {
    const { stripe, card } = fakeStripe();
    const pay = vi.fn(async () => attempt({ status: 'requires_action', requires_action: true }));
    const onSubmitted = vi.fn();
    render(<CardPayment amountCents={4999} currency="USD" pay={pay} onSubmitted={onSubmitted} />);

    const button = screen.getByTestId('pay-button');
    await waitFor(() => expect(button).toHaveProperty('disabled', false));
    expect(window.Stripe).toHaveBeenCalledWith('pk_test_123');
    expect(card.mount).toHaveBeenCalledWith(screen.getByTestId('card-element'));
    expect(button.textContent).toBe('Pay $49.99');

    fireEvent.click(button);
    await waitFor(() => expect(onSubmitted).toHaveBeenCalledTimes(1));
    expect(stripe.createToken).toHaveBeenCalledWith(card);
    expect(pay).toHaveBeenCalledWith('tok_visa');
    expect(stripe.confirmCardPayment).toHaveBeenCalledWith('pi_1_secret_abc');
    expect(button.textContent).toBe('Payment sent');
    expect(button).toHaveProperty('disabled', true);
  });

  it('skips 3-D Secure when the bank does not ask for it', async () => {
    const { stripe } = fakeStripe();
    const onSubmitted = vi.fn();
    render(<CardPayment amountCents={100} currency="USD" pay={async () => attempt()} onSubmitted={onSubmitted} />);
    const button = screen.getByTestId('pay-button');
    await waitFor(() => expect(button).toHaveProperty('disabled', false));
    fireEvent.click(button);
    await waitFor(() => expect(onSubmitted).toHaveBeenCalled());
    expect(stripe.confirmCardPayment).not.toHaveBeenCalled();
  });

  it('shows a decline clearly and does not report success', async () => {
    fakeStripe();
    const onSubmitted = vi.fn();
    const onDeclined = vi.fn();
    const pay = vi.fn(async () => {
      throw new ApiError(402, 'payment_declined', 'Your card was declined.');
    });
    render(
      <CardPayment amountCents={4999} currency="USD" pay={pay} onSubmitted={onSubmitted} onDeclined={onDeclined} />,
    );
    const button = screen.getByTestId('pay-button');
    await waitFor(() => expect(button).toHaveProperty('disabled', false));
    fireEvent.click(button);
    await waitFor(() => expect(screen.getByTestId('payment-error').textContent).toBe('Your card was declined.'));
    expect(screen.getByTestId('payment-error').hidden).toBe(false);
    expect(onDeclined).toHaveBeenCalledWith('Your card was declined.');
    expect(onSubmitted).not.toHaveBeenCalled();
    expect(button.textContent).toBe('Payment declined');
  });

  it('lets the shopper fix card details when Stripe refuses to make a token', async () => {
    const { stripe } = fakeStripe();
    stripe.createToken.mockResolvedValueOnce({ error: { message: 'Your card number is incomplete.' } } as never);
    const pay = vi.fn(async () => attempt());
    render(<CardPayment amountCents={4999} currency="USD" pay={pay} onSubmitted={vi.fn()} />);
    const button = screen.getByTestId('pay-button');
    await waitFor(() => expect(button).toHaveProperty('disabled', false));
    fireEvent.click(button);
    await waitFor(() => expect(screen.getByTestId('payment-error').textContent).toBe('Your card number is incomplete.'));
    expect(pay).not.toHaveBeenCalled();
    expect(button).toHaveProperty('disabled', false);
  });

  it('treats a failed 3-D Secure check as a decline', async () => {
    const { stripe } = fakeStripe();
    stripe.confirmCardPayment.mockResolvedValueOnce({
      error: { message: 'We are unable to authenticate your payment method.' },
    } as never);
    const onSubmitted = vi.fn();
    render(
      <CardPayment
        amountCents={4999}
        currency="USD"
        pay={async () => attempt({ status: 'requires_action', requires_action: true })}
        onSubmitted={onSubmitted}
        allowRetryAfterDecline
      />,
    );
    const button = screen.getByTestId('pay-button');
    await waitFor(() => expect(button).toHaveProperty('disabled', false));
    fireEvent.click(button);
    await waitFor(() =>
      expect(screen.getByTestId('payment-error').textContent).toBe('We are unable to authenticate your payment method.'),
    );
    expect(onSubmitted).not.toHaveBeenCalled();
    // A cart order may try another card.
    expect(button).toHaveProperty('disabled', false);
  });
});
