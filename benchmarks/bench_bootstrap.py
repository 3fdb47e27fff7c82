"""Benchmark: the scorecard's MSE-ratio block bootstrap, hand-written vs the `arch` package, side by side.

    python benchmarks/bench_bootstrap.py [--times 5000] [--assets 10] [--block 60] [--n-boot 1000]

The same per-timestamp losses (AR(1) errors correlated across assets, two forecasters) go to
`training.metrics.block_bootstrap_ratio` (vectorised: prefix sums of every circular block, one
gather per resample) and to `arch.bootstrap.CircularBlockBootstrap(...).conf_int` (a Python call
of the statistic per resample) with the same block and percentile interval.  Prints the time per
call, the two intervals (they differ by Monte-Carlo error only: different random streams) and
arch's Politis-White optimal block lengths of the ratio's linearised loss differential.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def losses(times: int, assets: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Squared errors of two forecasters whose errors are AR(1) over time (phi 0.95, as for
    overlapping 30-bar forward windows) and correlated across assets; B's error is A's plus its
    own AR(1) error, so the loss differential is autocorrelated too."""
    rng = np.random.default_rng(seed)

    def ar1(shape) -> np.ndarray:
        shocks = rng.normal(size=shape)
        out = np.zeros(shape)
        for t in range(1, shape[0]):
            out[t] = 0.95 * out[t - 1] + 0.3 * shocks[t]
        return out

    err_a = ar1((times, assets)) + ar1((times, 1))
    err_b = err_a + 0.5 * ar1((times, assets))
    return err_a**2, err_b**2


def timed(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=5000)
    ap.add_argument("--assets", type=int, default=10)
    ap.add_argument("--block", type=int, default=60)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from arch.bootstrap import CircularBlockBootstrap, optimal_block_length

    from adaptive_beta.training.metrics import _per_time_sums, block_bootstrap_ratio

    a, b = losses(args.times, args.assets)
    sa, sb = _per_time_sums(a, b)

    def ours():
        return block_bootstrap_ratio(a, b, args.block, args.n_boot, alpha=0.10, seed=0)

    def with_arch():
        bs = CircularBlockBootstrap(args.block, sa, sb, seed=0)
        ci = bs.conf_int(
            lambda x, y: np.array([x.sum() / y.sum()]), reps=args.n_boot, method="percentile", size=0.9
        )
        return float(sa.sum() / sb.sum()), float(ci[0, 0]), float(ci[1, 0])

    t_ours, r_ours = timed(ours, args.repeat)
    t_arch, r_arch = timed(with_arch, args.repeat)
    ratio = sa.sum() / sb.sum()
    t0 = time.perf_counter()
    opt = optimal_block_length(sa - ratio * sb)
    t_opt = time.perf_counter() - t0

    print(f"{args.times} timestamps x {args.assets} assets, block {args.block}, {args.n_boot} resamples")
    print(f"{'method':<34} {'ms/call':>9} {'ratio':>8} {'lo':>8} {'hi':>8}")
    for name, t, r in (
        ("hand-written (training.metrics)", t_ours, r_ours),
        ("arch CircularBlockBootstrap", t_arch, r_arch),
    ):
        print(f"{name:<34} {1000 * t:9.1f} {r[0]:8.4f} {r[1]:8.4f} {r[2]:8.4f}")
    print(f"arch / hand-written time: {t_arch / t_ours:.0f}x")
    print(
        f"arch optimal_block_length (Politis-White) of the linearised differential: "
        f"circular {opt['circular'].iloc[0]:.1f}, stationary {opt['stationary'].iloc[0]:.1f} bars "
        f"({1000 * t_opt:.1f} ms)"
    )


if __name__ == "__main__":
    main()
