import { useEffect, useId, useRef, useState, type FormEvent } from 'react';
import { ApiError, errorMessage } from '../api/client';
import type { PaymentAttempt } from '../api/types';
import { loadStripe, type StripeCardElement, type StripeError, type StripeInstance } from '../lib/stripe';
import { formatMoney } from '../lib/money';

interface CardPaymentProps {
  amountCents: number;
  currency: string;
  /** Charge the order or ticket with a single-use card token (POST …/pay). */
  pay: (cardToken: string) => Promise<PaymentAttempt>;
  /** The charge went through on Stripe's side; the order is finalized by the webhook. */
  onSubmitted: () => void;
  /** The card was declined or 3-D Secure failed. */
  onDeclined?: (message: string) => void;
  /** Let the shopper try another card after a decline (a cart order can; a ticket's reservation is released). */
  allowRetryAfterDecline?: boolean;
  disabled?: boolean;
  /** The button's verb, for a form that holds rather than charges (a draw entry): "Authorise". */
  verb?: { action: string; working: string; sent: string; step: string };
}

type Phase = 'loading' | 'ready' | 'working' | 'submitted' | 'declined' | 'unavailable';

const PAY_VERB = { action: 'Pay', working: 'Paying…', sent: 'Payment sent', step: 'Charging your card…' };

const DECLINED_STATUSES = new Set(['requires_payment_method', 'canceled']);

function stripeMessage(error: StripeError | Error | undefined, fallback: string): string {
  // Stripe reports plain objects with a message for people; anything else is a script error.
  if (error && !(error instanceof Error) && typeof error.message === 'string' && error.message) return error.message;
  return fallback;
}

/**
 * Stripe card form. The flow works the same on real Stripe and on the emulator, whose Stripe.js
 * stand-in has no createPaymentMethod: createToken → POST …/pay {card_token} → if the answer
 * requires_action, confirmCardPayment(client_secret) for 3-D Secure → the caller waits for the
 * webhook to mark the order paid.
 */
export function CardPayment({
  amountCents,
  currency,
  pay,
  onSubmitted,
  onDeclined,
  allowRetryAfterDecline = false,
  disabled = false,
  verb = PAY_VERB,
}: CardPaymentProps) {
  const mountRef = useRef<HTMLDivElement>(null);
  const stripeRef = useRef<StripeInstance | null>(null);
  const cardRef = useRef<StripeCardElement | null>(null);
  const [phase, setPhase] = useState<Phase>('loading');
  const [error, setError] = useState<string | null>(null);
  const [step, setStep] = useState<string>('Loading the payment form…');
  const [loadAttempt, setLoadAttempt] = useState(0);
  const labelId = useId();

  useEffect(() => {
    let cancelled = false;
    let card: StripeCardElement | null = null;
    setPhase('loading');
    setStep('Loading the payment form…');
    loadStripe().then(
      (stripe) => {
        if (cancelled || !mountRef.current) return;
        card = stripe.elements().create('card', {
          style: { base: { fontSize: '16px', color: '#1a1a1a' } },
        });
        card.mount(mountRef.current);
        card.on?.('change', (event) => setError(event?.error?.message ?? null));
        stripeRef.current = stripe;
        cardRef.current = card;
        setPhase('ready');
        setStep('');
      },
      (caught) => {
        if (cancelled) return;
        setPhase('unavailable');
        setError(errorMessage(caught));
        setStep('');
      },
    );
    return () => {
      cancelled = true;
      card?.destroy();
      cardRef.current = null;
    };
  }, [loadAttempt]);

  const declined = (message: string) => {
    setError(message);
    setStep('');
    setPhase(allowRetryAfterDecline ? 'ready' : 'declined');
    onDeclined?.(message);
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const stripe = stripeRef.current;
    const card = cardRef.current;
    if (phase !== 'ready' || disabled || !stripe || !card) return;
    setPhase('working');
    setError(null);
    setStep('Checking your card…');
    try {
      const { token, error: tokenError } = await stripe.createToken(card);
      if (tokenError || !token) {
        setError(stripeMessage(tokenError, 'Check your card details and try again.'));
        setStep('');
        setPhase('ready');
        return;
      }
      setStep(verb.step);
      const attempt = await pay(token.id);
      if (attempt.requires_action) {
        setStep('Waiting for your bank to confirm…');
        const confirmation = await stripe.confirmCardPayment(attempt.client_secret);
        if (confirmation.error) {
          declined(stripeMessage(confirmation.error, 'Your bank did not confirm the payment.'));
          return;
        }
        if (confirmation.paymentIntent && DECLINED_STATUSES.has(confirmation.paymentIntent.status)) {
          declined('Your bank did not confirm the payment.');
          return;
        }
      } else if (DECLINED_STATUSES.has(attempt.status)) {
        declined('Your card was declined.');
        return;
      }
      setPhase('submitted');
      setStep('Payment sent. Confirming your order…');
      onSubmitted();
    } catch (caught) {
      if (caught instanceof ApiError && (caught.status === 402 || caught.code === 'payment_declined')) {
        declined(caught.message);
        return;
      }
      setError(errorMessage(caught));
      setStep('');
      setPhase('ready');
    }
  };

  const busy = phase === 'working' || phase === 'loading';
  return (
    <form className="card-payment" onSubmit={submit} aria-busy={busy} data-testid="payment-form">
      <p id={labelId} className="label">
        Card details
      </p>
      <div
        ref={mountRef}
        className="card-element"
        role="group"
        aria-labelledby={labelId}
        data-testid="card-element"
      />
      {phase === 'unavailable' ? (
        <button type="button" className="button" onClick={() => setLoadAttempt((n) => n + 1)}>
          Load the payment form again
        </button>
      ) : null}
      <p className="payment-step" role="status" data-testid="payment-status">
        {step}
      </p>
      <p className="payment-error" role="alert" data-testid="payment-error" hidden={!error}>
        {error}
      </p>
      <button
        type="submit"
        className="button button-primary button-wide"
        disabled={phase !== 'ready' || disabled}
        data-testid="pay-button"
      >
        {phase === 'working'
          ? verb.working
          : phase === 'submitted'
            ? verb.sent
            : phase === 'declined'
              ? 'Payment declined'
              : `${verb.action} ${formatMoney(amountCents, currency)}`}
      </button>
    </form>
  );
}
