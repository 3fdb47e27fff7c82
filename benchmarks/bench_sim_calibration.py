"""Real vs simulated market statistics, side by side: how well the simulator is calibrated.

    python benchmarks/bench_sim_calibration.py [--real docs/datasets/binance-perps-8h.toml]
        [--until 2021-05-01] [--seeds 201-208] [--presets calibrated,legacy] [--markdown] [--estimators]

Prints the settings, then one row per statistic (models/sim/stats.py): the recorded calibration
target (models/sim/config.py CALIBRATION_TARGETS), the real value recomputed from --real when the
data is there (bars before --until only; skipped with a message otherwise), and for each preset
the mean and sd over the seeds of the statistic on simulated markets shaped like the real sample
(CALIBRATION_SHAPE), z = (sim mean - target) / (tolerance / 2) (the gap in sampling sds of one
real-sized sample, as fitted) and whether |sim mean - target| is within the recorded tolerance.
The last lines count the statistics within tolerance per preset.  With --estimators, a second
table: on each preset's default-shaped market, the MSE of classical betas against the true
forward 30-day beta relative to the 365-day rolling OLS.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REAL_MANIFEST = ROOT / "docs" / "datasets" / "binance-perps-8h.toml"


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def real_statistics(manifest: Path, until: str) -> dict[str, float] | None:
    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.sim.stats import market_statistics

    try:
        panel = load_dataset(manifest)
    except Exception as exc:  # noqa: BLE001  (a benchmark reports and carries on)
        print(f"real data: skipped ({type(exc).__name__}: {exc})")
        return None
    return market_statistics(panel, until=until)


def comparison(presets: list[str], seeds: list[int], real: dict[str, float] | None) -> pd.DataFrame:
    from adaptive_beta.models.sim.config import CALIBRATION_TARGETS, CALIBRATION_TOLERANCES
    from adaptive_beta.models.sim.stats import STAT_NAMES, simulated_statistics

    table = pd.DataFrame(index=list(STAT_NAMES))
    table["target"] = pd.Series(CALIBRATION_TARGETS)
    table["tol"] = pd.Series(CALIBRATION_TOLERANCES)
    if real is not None:
        table["real_now"] = pd.Series(real)
    for preset in presets:
        sims = simulated_statistics(preset, seeds)
        mean, sd = sims.mean(), sims.std(ddof=1)
        table[f"{preset}_mean"] = mean
        table[f"{preset}_sd"] = sd
        table[f"{preset}_z"] = (mean - table["target"]) / (table["tol"] / 2)
        table[f"{preset}_ok"] = (mean - table["target"]).abs() <= table["tol"]
    return table


LESSON_ESTIMATORS = ("expanding", "rolling_ols_90d", "welch_hl60d", "welch_hl120d")


def estimator_lesson(presets: list[str], seeds: list[int]) -> pd.DataFrame:
    """MSE vs the true forward 30-day beta of classical betas / that of the 365-day rolling OLS, per
    preset and benchmark: the default market shape (12 assets x 4 years daily), first year skipped,
    mean over seeds.  Does the simulator teach what the real perps do (long fixed windows lose)?"""
    from adaptive_beta.models.estimators.ewma import welch_beta
    from adaptive_beta.models.estimators.rolling import rolling_ols_beta
    from adaptive_beta.models.features.targets import true_forward_betas
    from adaptive_beta.models.sim.config import SimConfig
    from adaptive_beta.models.sim.simulator import simulate
    from adaptive_beta.models.sim.stats import simulation_panel

    rows = []
    for preset in presets:
        for seed in seeds:
            panel = simulation_panel(simulate(SimConfig.from_preset(preset, seed=seed)))
            r, br = panel.returns(), panel.benchmark_returns()
            truth_all = true_forward_betas(panel, "30d")
            for bench in panel.benchmark_names:
                y = r.drop(columns=[bench], errors="ignore")
                est = {
                    "rolling_ols_365d": rolling_ols_beta(y, br[bench], 365),
                    "expanding": rolling_ols_beta(y, br[bench], len(y), min_periods=180),
                    "rolling_ols_90d": rolling_ols_beta(y, br[bench], 90),
                    "welch_hl60d": welch_beta(y, br[bench], 60.0),
                    "welch_hl120d": welch_beta(y, br[bench], 120.0),
                }
                truth = truth_all[bench].unstack("symbol").reindex(index=y.index, columns=y.columns)
                keep = y.index >= y.index[0] + pd.Timedelta("365D")
                mse = {
                    k: float(np.nanmean((v.to_numpy() - truth.to_numpy())[keep] ** 2)) for k, v in est.items()
                }
                rows.append(
                    {"preset": preset, "benchmark": bench}
                    | {k: mse[k] / mse["rolling_ols_365d"] for k in LESSON_ESTIMATORS}
                )
    return pd.DataFrame(rows).groupby(["preset", "benchmark"], sort=False).mean()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, default=REAL_MANIFEST, help="real dataset (manifest or folder)")
    ap.add_argument("--until", default="2021-05-01", help="use real bars strictly before this date")
    ap.add_argument("--seeds", default="201-208", help="simulator seeds (default CHECK_SEEDS), e.g. 101-116")
    ap.add_argument("--presets", default="calibrated,legacy")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table (for docs)")
    ap.add_argument(
        "--estimators",
        action="store_true",
        help="also: MSE vs the true forward beta of classical estimators / 365-day rolling OLS, per preset",
    )
    args = ap.parse_args(argv)

    from adaptive_beta.models.sim.config import CALIBRATION_SHAPE

    seeds, presets = _seeds(args.seeds), args.presets.split(",")
    print(
        f"settings: real={args.real} until={args.until}; simulated shape {CALIBRATION_SHAPE}; "
        f"presets {presets}; seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})"
    )
    t0 = time.perf_counter()
    real = real_statistics(args.real, args.until)
    table = comparison(presets, seeds, real)
    elapsed = time.perf_counter() - t0
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        if args.markdown:
            cols = ["target", "tol"] + [f"{p}_{k}" for p in presets for k in ("mean", "sd", "ok")]
            shown = table[cols].copy()
            print("| statistic | " + " | ".join(cols) + " |")
            print("|---" * (len(cols) + 1) + "|")
            for name, row in shown.iterrows():
                cells = [
                    ("yes" if v else "**no**") if isinstance(v, bool | np.bool_) else f"{v:.3f}" for v in row
                ]
                print(f"| {name} | " + " | ".join(cells) + " |")
        else:
            print(table.round(3).to_string())
    for p in presets:
        ok = table[f"{p}_ok"]
        z = table[f"{p}_z"]
        print(
            f"{p}: {int(ok.sum())}/{len(ok)} statistics within tolerance"
            f" ({', '.join(table.index[~ok]) or 'all'}{' outside' if (~ok).any() else ''});"
            f" max |z| {z.abs().max():.2f}, sum z^2 {float((z**2).sum()):.1f}"
        )
    if real is not None:
        drift = (table["real_now"] - table["target"]).abs().max()
        print(f"real statistics recomputed: max |real - recorded target| = {drift:.2e}")
    if args.estimators:
        lesson_seeds = seeds[:3]
        print(
            f"\nMSE vs true forward 30d beta / rolling_ols_365d (12 assets x 1460 days daily, first year"
            f" skipped; seeds {lesson_seeds}):"
        )
        print(estimator_lesson(presets, lesson_seeds).round(3).to_string())
    print(f"({time.perf_counter() - t0:.1f} s; statistics {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
