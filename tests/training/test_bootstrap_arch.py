"""The scorecard's hand-written block bootstrap against the `arch` package, and arch's block length.

`training.metrics.block_bootstrap_ratio` is kept for speed (benchmarks/bench_bootstrap.py: 37-79x
faster than arch at the scorecard's sizes); these tests hold it to arch's
`CircularBlockBootstrap` on the same data and block, within Monte-Carlo error, and check the
Politis-White diagnostic the scorecard reports beside its fixed block.
"""

from __future__ import annotations

import numpy as np
import pytest
from arch.bootstrap import CircularBlockBootstrap, optimal_block_length

import adaptive_beta.training.metrics as M


def ar1(rng, shape, phi: float = 0.95) -> np.ndarray:
    shocks = rng.normal(size=shape)
    out = np.zeros(shape)
    for t in range(1, shape[0]):
        out[t] = phi * out[t - 1] + shocks[t]
    return out


@pytest.fixture(scope="module")
def losses():
    """Squared errors of two forecasters over 1,500 timestamps x 6 assets, autocorrelated in time and
    correlated across assets; B's error adds its own AR(1) error to A's."""
    rng = np.random.default_rng(11)
    err_a = ar1(rng, (1500, 6)) + ar1(rng, (1500, 1))
    err_b = err_a + 0.6 * ar1(rng, (1500, 6))
    return err_a**2, err_b**2


def arch_interval(sa, sb, block: int, reps: int, seed: int) -> tuple[float, float]:
    bs = CircularBlockBootstrap(block, sa, sb, seed=seed)
    ci = bs.conf_int(lambda x, y: np.array([x.sum() / y.sum()]), reps=reps, method="percentile", size=0.9)
    return float(ci[0, 0]), float(ci[1, 0])


def test_hand_written_interval_agrees_with_arch_circular_block_bootstrap_within_monte_carlo_error(losses):
    a, b = losses
    sa, sb = M._per_time_sums(a, b)
    block, reps = 40, 2000
    ours = np.array([M.block_bootstrap_ratio(a, b, block, reps, alpha=0.10, seed=s)[1:] for s in range(8)])
    theirs = np.array([arch_interval(sa, sb, block, reps, seed=s) for s in range(2)])
    mc_sd = ours.std(axis=0, ddof=1)  # Monte-Carlo spread of each endpoint over seeds
    assert (mc_sd > 0).all() and (mc_sd < 0.01).all()
    gap = np.abs(ours.mean(axis=0) - theirs.mean(axis=0))
    assert (gap < 4 * mc_sd * np.sqrt(1 / 8 + 1 / 2)).all(), (ours.mean(axis=0), theirs.mean(axis=0), mc_sd)
    # the comparison can tell blocks apart: i.i.d. resampling (block 1) gives a far narrower interval
    iid = arch_interval(sa, sb, 1, reps, seed=0)
    width = np.diff(ours.mean(axis=0))[0]
    assert iid[1] - iid[0] < 0.6 * width


def test_optimal_block_is_arch_politis_white_on_the_linearised_differential(losses):
    a, b = losses
    sa, sb = M._per_time_sums(a, b)
    d = sa - sa.sum() / sb.sum() * sb
    expected = float(optimal_block_length(d)["circular"].iloc[0])
    assert M.optimal_block(a, b) == pytest.approx(expected, rel=1e-12)
    assert 10 < expected < 200  # AR(1) with phi 0.95: long memory, a long block
    rng = np.random.default_rng(0)
    white_a, white_b = rng.normal(size=(1500, 6)) ** 2, rng.normal(size=(1500, 6)) ** 2
    assert M.optimal_block(white_a, white_b) < 5
    assert np.isnan(M.optimal_block(a, a))  # an estimator against itself: no differential
    assert np.isnan(M.optimal_block(a[:20], b[:20]))  # too short to estimate


def test_scorecard_reports_the_fixed_block_beside_politis_white_on_the_pooled_split_only(tmp_path):
    import adaptive_beta as ab

    sim = ab.simulate(tmp_path / "sim", seed=3, n_assets=4, days=760)
    splits = {"train_min": "300d", "val": "60d", "test": "120d", "max_folds": 2}
    card = ab.evaluate_baselines(sim, horizon="30d", n_boot=20, splits=splits)
    added = [r for r in card.records if r["metric"] in ("mse_ratio_block", "mse_ratio_block_opt")]
    assert added and {r["split"] for r in added} == {"pooled"}
    refs = card.meta["reference"]
    assert all(r["estimator"] != refs[r["benchmark"]] for r in added)
    assert {r["value"] for r in added if r["metric"] == "mse_ratio_block"} == {60}
    opt = [r["value"] for r in added if r["metric"] == "mse_ratio_block_opt"]
    assert all(1 <= v <= 300 for v in opt)
    with_ratio = {(r["estimator"], r["benchmark"]) for r in card.records if r["metric"] == "dm_pvalue"}
    assert {(r["estimator"], r["benchmark"]) for r in added} == with_ratio
