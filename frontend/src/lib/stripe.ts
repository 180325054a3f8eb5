// Stripe.js is loaded at run time from the URL the API names (GET /api/config): the real
// https://js.stripe.com/v3/ in production, the emulator's stand-in in development.
import { publicConfig } from '../api/shop';

export interface StripeError {
  message?: string;
  code?: string;
  type?: string;
}

export interface StripeCardElement {
  mount(target: HTMLElement | string): void;
  destroy(): void;
  on?(event: string, handler: (event?: { error?: StripeError; complete?: boolean }) => void): void;
  focus?(): void;
}

export interface StripeInstance {
  elements(options?: Record<string, unknown>): {
    create(type: 'card', options?: Record<string, unknown>): StripeCardElement;
  };
  createToken(card: StripeCardElement): Promise<{ token?: { id: string }; error?: StripeError }>;
  confirmCardPayment(
    clientSecret: string,
  ): Promise<{ paymentIntent?: { id?: string; status: string }; error?: StripeError }>;
}

declare global {
  interface Window {
    Stripe?: (publishableKey: string) => StripeInstance;
  }
}

const scripts = new Map<string, Promise<void>>();
const instances = new Map<string, StripeInstance>();

function loadScript(url: string): Promise<void> {
  if (window.Stripe) return Promise.resolve();
  let loading = scripts.get(url);
  if (!loading) {
    loading = new Promise<void>((resolve, reject) => {
      const script = document.createElement('script');
      // A classic script: the emulator's stand-in finds its server through document.currentScript.
      script.src = url;
      script.async = true;
      script.onload = () => resolve();
      script.onerror = () => {
        scripts.delete(url);
        script.remove();
        reject(new Error('The payment form could not be loaded. Check your connection and try again.'));
      };
      document.head.appendChild(script);
    });
    scripts.set(url, loading);
  }
  return loading;
}

export async function loadStripe(): Promise<StripeInstance> {
  const config = await publicConfig();
  if (!config.stripe_publishable_key) throw new Error('Payments are not configured on this shop yet.');
  await loadScript(config.stripe_js_url);
  if (!window.Stripe) throw new Error('The payment form could not be loaded.');
  let stripe = instances.get(config.stripe_publishable_key);
  if (!stripe) {
    stripe = window.Stripe(config.stripe_publishable_key);
    instances.set(config.stripe_publishable_key, stripe);
  }
  return stripe;
}

/** Forget loaded instances (tests swap window.Stripe between cases). */
export function resetStripe(): void {
  instances.clear();
  scripts.clear();
}
