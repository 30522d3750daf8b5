// scripts/simulate/traffic.ts — seeded randomness and the diurnal traffic model of the simulator.
// Pure: no I/O, no clock, no Math.random. The same seed gives the same numbers on every machine, so a
// simulated run (and its ground truth) is reproducible from `--seed`.

/** 32-bit string/number mixer (FNV-1a over the text, then a murmur3 finaliser). */
export function hash32(...parts: Array<string | number>): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    const text = `${part}\u0000`;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * mulberry32: the classic tiny 32-bit generator. Good enough for one short stream; its state is a single
 * 32-bit counter, so many streams seeded from nearby values would overlap. The simulator therefore uses it
 * only to expand a seed into the 128-bit state of {@link Rng} (xoshiro128**).
 */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Seeded generator: xoshiro128** (128-bit state, period 2^128 - 1), seeded through mulberry32. Streams for
 * different (seed, minute) pairs start at unrelated points of a huge cycle, so trace and span ids drawn from
 * them do not repeat across a long run.
 */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spareNormal: number | null = null;

  constructor(seed: number) {
    const init = mulberry32(seed);
    const word = () => (init() * 4294967296) >>> 0;
    this.s0 = word();
    this.s1 = word();
    this.s2 = word();
    this.s3 = word();
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A stream derived from a seed and any labels (e.g. the minute index), independent of other labels. */
  static derive(seed: number, ...labels: Array<string | number>): Rng {
    return new Rng(hash32(seed, ...labels));
  }

  /** Next uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  /** Picks a key by weight. */
  weighted<T>(items: ReadonlyArray<readonly [T, number]>): T {
    let total = 0;
    for (const [, w] of items) total += w;
    let x = this.next() * total;
    for (const [item, w] of items) {
      x -= w;
      if (x < 0) return item;
    }
    return items[items.length - 1][0];
  }

  /** Standard normal (Box-Muller, caching the second value). */
  normal(): number {
    if (this.spareNormal !== null) {
      const v = this.spareNormal;
      this.spareNormal = null;
      return v;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Log-normal with the given median and shape sigma (the sd of the underlying normal). */
  logNormal(median: number, sigma: number): number {
    return median * Math.exp(sigma * this.normal());
  }

  /** Poisson count with mean lambda (Knuth for small means, a normal approximation above 60). */
  poisson(lambda: number): number {
    if (!(lambda > 0)) return 0;
    if (lambda > 60) return Math.max(0, Math.round(lambda + Math.sqrt(lambda) * this.normal()));
    const limit = Math.exp(-lambda);
    let k = 0;
    let p = this.next();
    while (p > limit) {
      k++;
      p *= this.next();
    }
    return k;
  }

  /** Lower-case hex string of `chars` characters (a multiple of 8), never all zeros. */
  hex(chars: number): string {
    for (;;) {
      let out = "";
      for (let i = 0; i < chars; i += 8) out += this.nextU32().toString(16).padStart(8, "0");
      if (!/^0+$/.test(out)) return out;
    }
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

// ------------------------------------------------------------------------------------------ diurnal

/** Shape of the daily traffic curve. Hours are UTC. */
export interface DiurnalModel {
  /** 0..1: how deep the night trough is. rate(trough) = peak * (1 - amplitude) / (1 + amplitude). */
  amplitude: number;
  /** UTC hour (may be fractional) of the daily peak; the trough is 12 hours later. */
  peakHourUtc: number;
  /** Multiplier on Saturdays and Sundays (UTC). 1 = no weekly pattern. */
  weekendFactor: number;
  /** Sigma of a per-minute log-normal jitter on the rate (0 = none). */
  minuteJitter: number;
}

export const DEFAULT_DIURNAL: DiurnalModel = {
  amplitude: 0.6,
  peakHourUtc: 15,
  weekendFactor: 0.75,
  minuteJitter: 0.05,
};

/**
 * Fraction (0..1] of the weekday peak rate expected at `epochMs`:
 * f(t) = (1 + a·cos(2π(h − peak)/24)) / (1 + a) · (weekend ? w : 1).
 */
export function diurnalFactor(epochMs: number, model: DiurnalModel = DEFAULT_DIURNAL): number {
  const date = new Date(epochMs);
  const hour = date.getUTCHours() + date.getUTCMinutes() / 60 + date.getUTCSeconds() / 3600;
  const a = Math.min(Math.max(model.amplitude, 0), 0.99);
  const daily = (1 + a * Math.cos((2 * Math.PI * (hour - model.peakHourUtc)) / 24)) / (1 + a);
  const day = date.getUTCDay();
  const weekly = day === 0 || day === 6 ? model.weekendFactor : 1;
  return daily * weekly;
}

/** Expected traces per minute at `epochMs` for a peak rate of `peakPerMinute`. */
export function expectedRate(
  epochMs: number,
  peakPerMinute: number,
  model: DiurnalModel = DEFAULT_DIURNAL,
): number {
  return peakPerMinute * diurnalFactor(epochMs, model);
}
