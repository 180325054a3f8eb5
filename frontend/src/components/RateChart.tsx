export interface Sample {
  /** ms since epoch when the stats were read. */
  at: number;
  ticketsIssued: number;
}

export interface Rate {
  at: number;
  perSecond: number;
}

/** Admissions per second between consecutive samples, from the growth of `tickets_issued`. */
export function admissionRates(samples: Sample[]): Rate[] {
  const rates: Rate[] = [];
  for (let i = 1; i < samples.length; i += 1) {
    const seconds = (samples[i].at - samples[i - 1].at) / 1000;
    if (seconds <= 0) continue;
    const issued = Math.max(0, samples[i].ticketsIssued - samples[i - 1].ticketsIssued);
    rates.push({ at: samples[i].at, perSecond: issued / seconds });
  }
  return rates;
}

const WIDTH = 300;
const HEIGHT = 80;

/** A bar per sample interval, newest on the right; the scale follows the highest bar shown. */
export function RateChart({ rates, slots = 60 }: { rates: Rate[]; slots?: number }) {
  const shown = rates.slice(-slots);
  const peak = Math.max(1, ...shown.map((rate) => rate.perSecond));
  const barWidth = WIDTH / slots;
  const latest = shown.length ? shown[shown.length - 1].perSecond : 0;
  return (
    <figure className="chart" data-testid="admissions-chart">
      <svg
        viewBox={`0 0 ${WIDTH} ${HEIGHT}`}
        width="100%"
        height={HEIGHT}
        preserveAspectRatio="none"
        role="img"
        aria-label={`Admissions per second over the last ${shown.length} seconds; now ${latest.toFixed(1)} per second, peak ${peak.toFixed(1)}.`}
      >
        <line x1={0} y1={HEIGHT - 0.5} x2={WIDTH} y2={HEIGHT - 0.5} className="chart-axis" />
        {shown.map((rate, index) => {
          const height = (rate.perSecond / peak) * (HEIGHT - 4);
          const x = (slots - shown.length + index) * barWidth;
          return (
            <rect
              key={rate.at}
              x={x + 0.5}
              y={HEIGHT - height}
              width={Math.max(1, barWidth - 1)}
              height={height}
              className="chart-bar"
            />
          );
        })}
      </svg>
      <figcaption>
        Admissions per second: <strong data-testid="admissions-rate">{latest.toFixed(1)}</strong> now, peak{' '}
        {peak.toFixed(1)}
      </figcaption>
    </figure>
  );
}
