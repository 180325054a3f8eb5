import { render, screen } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { advance } from '../test/render';
import { formatCountdown } from '../lib/time';
import { Countdown } from './Countdown';

describe('Countdown', () => {
  it('ticks down every second and calls onDone once at zero', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2030-01-01T12:00:00.000Z'));
    const onDone = vi.fn();
    render(<Countdown to="2030-01-01T12:01:05Z" onDone={onDone} testId="clock" />);
    expect(screen.getByTestId('clock').textContent).toBe('01:05');

    await advance(1000);
    expect(screen.getByTestId('clock').textContent).toBe('01:04');
    expect(onDone).not.toHaveBeenCalled();

    await advance(64_000);
    expect(screen.getByTestId('clock').textContent).toBe('00:00');
    expect(onDone).toHaveBeenCalledTimes(1);

    await advance(5000);
    expect(screen.getByTestId('clock').textContent).toBe('00:00');
    expect(onDone).toHaveBeenCalledTimes(1);
  });

  it('formats hours and days', () => {
    expect(formatCountdown(3_723_000)).toBe('01:02:03');
    expect(formatCountdown(2 * 86_400_000 + 5000)).toBe('2d 00:00:05');
    expect(formatCountdown(-5)).toBe('00:00');
    expect(formatCountdown(1)).toBe('00:01');
  });
});
