const formatters = new Map<string, Intl.NumberFormat>();

function fractionDigits(currency: string): number {
  try {
    return new Intl.NumberFormat('en', { style: 'currency', currency }).resolvedOptions()
      .maximumFractionDigits ?? 2;
  } catch {
    return 2;
  }
}

/** Format integer minor units (`*_cents`) in their currency, e.g. 1999 USD → "$19.99". */
export function formatMoney(cents: number, currency: string, locale?: string): string {
  const code = (currency || 'USD').toUpperCase();
  const key = `${locale ?? ''}|${code}`;
  let formatter = formatters.get(key);
  if (!formatter) {
    try {
      formatter = new Intl.NumberFormat(locale, { style: 'currency', currency: code });
    } catch {
      formatter = new Intl.NumberFormat(locale, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    formatters.set(key, formatter);
  }
  return formatter.format(cents / 10 ** fractionDigits(code));
}

/** Parse what a person types as a price ("19.99") into minor units; null when it is not a price. */
export function parseMoneyToCents(text: string, currency: string): number | null {
  const trimmed = text.trim().replace(/,/g, '');
  if (!/^\d+(\.\d+)?$/.test(trimmed)) return null;
  const digits = fractionDigits(currency.toUpperCase());
  const [whole, fraction = ''] = trimmed.split('.');
  if (fraction.length > digits) return null;
  return Number(whole) * 10 ** digits + Number(fraction.padEnd(digits, '0') || '0');
}
