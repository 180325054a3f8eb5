import { cleanup } from '@testing-library/react';
import { afterEach, vi } from 'vitest';
import { resetClock } from '../lib/clock';
import { resetProductCache, resetPublicConfig } from '../api/shop';
import { resetStripe } from '../lib/stripe';
import { tokens } from '../api/client';

afterEach(() => {
  cleanup();
  vi.useRealTimers();
  tokens.clear();
  localStorage.clear();
  resetClock();
  resetPublicConfig();
  resetProductCache();
  resetStripe();
  delete window.Stripe;
});
