"""Windowing, the masked weighted loss, and fit_model on a learnable synthetic task.

The synthetic task (adaptive_beta.training.datasets.make_synthetic_task) has a known answer: forward beta =
base + 0.5 tanh(x1) (BTC) or base - 0.4 x2 (composite) + N(0, 0.1^2) noise, so a good fit has
RMSE near 0.1 while the base beta alone has RMSE ~0.35-0.45.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from adaptive_beta.models.features.windows import (
    feature_cube,
    gather_windows,
    latest_windows,
    sample_index,
    window_geometry,
)
from adaptive_beta.training.datasets import make_synthetic_task, time_decay_weights
from adaptive_beta.training.fit import calibration_scale, correction_scale, fit_model, predict_torch
from adaptive_beta.training.lit_module import masked_gaussian_nll, weighted_regime_ce
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.trainer_config import TrainerConfig

torch.set_num_threads(1)
TRAIN = ("2021-01-01", "2021-10-31")
VAL = ("2021-11-10", "2022-03-31")
TEST = ("2022-04-10", "2022-12-31")


# --- windowing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lookback", "freq", "bars", "stride", "steps"),
    [
        ("64d", "1D", 64, 2, 32),
        ("64d", "1h", 1536, 48, 32),
        ("10d", "1D", 10, 1, 10),
        ("30d", "8h", 90, 3, 30),
    ],
)
def test_window_geometry_converts_duration_and_caps_steps(lookback, freq, bars, stride, steps):
    g = window_geometry(lookback, pd.Timedelta(freq), max_steps=32)
    assert (g.lookback_bars, g.stride, g.steps) == (bars, stride, steps)
    assert g.span == (steps - 1) * stride + 1 <= bars


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 30))
def test_gather_windows_takes_strided_rows_oldest_first(bars, stride, extra):
    steps = -(-bars // stride)
    t_end = (steps - 1) * stride + extra
    cube = (
        np.arange(t_end + 1)[:, None, None] * 100 + np.arange(3)[None, :, None] + np.zeros((1, 1, 2))
    ).astype(np.float32)
    w = gather_windows(cube, np.array([[t_end, 2]]), bars, stride)
    assert w.shape == (1, steps, 2)
    expected = [(t_end - (steps - 1 - i) * stride) * 100 + 2 for i in range(steps)]
    np.testing.assert_array_equal(w[0, :, 0], expected)


def test_feature_cube_places_rows_on_the_grid_and_fills_gaps_with_nan():
    ts = pd.date_range("2024-01-01", periods=4, freq="1D", tz="UTC")
    idx = pd.MultiIndex.from_tuples([(ts[0], "B"), (ts[2], "A"), (ts[3], "B")], names=["timestamp", "symbol"])
    frame = pd.DataFrame({"f": [1.0, 2.0, 3.0], "g": [10.0, 20.0, 30.0]}, index=idx)
    cube, grid, syms = feature_cube(frame, ["g", "f"], timestamps=ts, symbols=["A", "B"])
    assert cube.shape == (4, 2, 2) and list(grid) == list(ts) and syms == ["A", "B"]
    assert cube[2, 0].tolist() == [20.0, 2.0] and cube[0, 1].tolist() == [10.0, 1.0]
    assert np.isnan(cube[1]).all() and np.isnan(cube[0, 0]).all()


def test_sample_index_keeps_valid_pairs_with_a_full_window():
    valid = np.ones((10, 2), dtype=bool)
    valid[7, 1] = False
    pairs = sample_index(valid, lookback_bars=6, stride=2)  # steps 3, span 5: t >= 4
    assert pairs[:, 0].min() == 4
    assert len(pairs) == 6 * 2 - 1
    assert [7, 1] not in pairs.tolist()


def test_latest_windows_end_at_last_finite_base_and_name_short_assets():
    ts = pd.date_range("2024-01-01", periods=6, freq="1D", tz="UTC")
    idx = pd.MultiIndex.from_product([ts, ["A", "B"]], names=["timestamp", "symbol"])
    base = np.arange(12, dtype=float)
    base[11] = np.nan  # B's last base beta is missing -> its window ends one bar earlier
    frame = pd.DataFrame({"base": base, "v": base * 10}, index=idx)
    x, as_of, ends = latest_windows(frame, ["base", "v"], 4, 2, ["A", "B"], require_finite=["base"])
    assert x.shape == (2, 2, 2) and ends == [5, 4] and as_of == [ts[5], ts[4]]
    assert x[0, :, 0].tolist() == [6.0, 10.0] and x[1, :, 0].tolist() == [5.0, 9.0]
    with pytest.raises(ValueError, match="asset A: window needs 7 bars"):
        latest_windows(frame, ["base", "v"], 7, 1, ["A"], require_finite=["base"])


def test_time_decay_weights_halve_per_halflife_and_average_one():
    ts = pd.date_range("2020-01-01", periods=800, freq="1D", tz="UTC")
    w = time_decay_weights(np.array([0, 365, 730]), ts, pd.Timedelta("365D"))
    np.testing.assert_allclose(w / w[-1], [0.25, 0.5, 1.0], rtol=1e-6)
    assert w.mean() == pytest.approx(1.0)
    np.testing.assert_array_equal(time_decay_weights(np.array([0, 5]), ts, None), [1.0, 1.0])


# --- loss ----------------------------------------------------------------------------------------
def test_masked_nll_matches_scipy_normal_logpdf_and_ignores_nan_targets():
    y = torch.tensor([[1.2, float("nan")], [0.7, 0.9]])
    beta = torch.tensor([[1.0, 5.0], [1.0, 1.0]])
    log_sigma = torch.log(torch.tensor([[0.5, 0.1], [0.2, 0.3]]))
    w = torch.tensor([2.0, 1.0])
    total, count = masked_gaussian_nll(y, beta, log_sigma, w)
    half_log_2pi = 0.5 * np.log(2 * np.pi)
    ref = [
        -stats.norm.logpdf(1.2, 1.0, 0.5) - half_log_2pi,
        -stats.norm.logpdf(0.7, 1.0, 0.2) - half_log_2pi,
        -stats.norm.logpdf(0.9, 1.0, 0.3) - half_log_2pi,
    ]
    assert float(count) == pytest.approx(2 + 1 + 1)
    assert float(total) == pytest.approx(2 * ref[0] + ref[1] + ref[2], rel=1e-6)
    beta.requires_grad_(True)
    masked_gaussian_nll(y, beta, log_sigma, w)[0].backward()
    assert beta.grad[0, 1] == 0.0  # the masked target gives no gradient


def test_regime_cross_entropy_skips_unknown_regimes():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, 5.0, 5.0]])
    total, count = weighted_regime_ce(logits, torch.tensor([0, 1, -1]), torch.ones(3))
    ref = -np.log(np.exp(2) / (np.exp(2) + 2)) - np.log(np.e / (np.e + 2))
    assert float(count) == 2.0 and float(total) == pytest.approx(ref, rel=1e-6)


def test_calibration_scale_recovers_the_miscalibration_factor():
    rng = np.random.default_rng(1)
    y = 2.0 * rng.standard_normal((20_000, 2))  # true sd 2, model says 1
    scale = calibration_scale(y, np.zeros_like(y), np.ones_like(y), 1.6448536, 0.9)
    np.testing.assert_allclose(scale, [2.0, 2.0], rtol=0.03)


def test_correction_scale_is_the_least_squares_shrinkage_clipped_to_unit_interval():
    rng = np.random.default_rng(2)
    base = rng.normal(1.0, 0.3, (5000, 3))
    delta = rng.normal(0.0, 0.2, (5000, 3))
    noise = 0.05 * rng.standard_normal((5000, 3))
    y = base + np.array([0.4, -0.5, 1.8]) * delta + noise  # true shrinkage 0.4; -0.5 -> 0; 1.8 -> 1
    y[::7, 0] = np.nan  # masked targets are ignored
    alpha = correction_scale(y, base, base + delta)
    assert alpha[0] == pytest.approx(0.4, abs=0.01)
    assert alpha[1] == 0.0 and alpha[2] == 1.0


# --- fit -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def task():
    return make_synthetic_task(n_time=730, n_assets=6, seed=0)


def _cfg(**kw) -> ModelConfig:
    base = dict(lookback="16d", max_steps=8, epochs=12, batch_size=64, patience=4, hidden=24)
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def fitted(task):
    f, y, r = task
    return fit_model(f, y, r, TRAIN, VAL, _cfg(), progress=False)


def test_fit_learns_the_synthetic_correction(fitted):
    h = fitted.history
    assert h[0]["train_nll"] > h[-1]["train_nll"] + 0.5
    assert fitted.best_epoch == int(np.argmin([e["val_loss"] for e in h]))
    for b in ("BTCUSDT", "CRYPTO_EW"):
        assert fitted.metrics[f"val_rmse_base_{b}"] > 0.3
        assert fitted.metrics[f"val_rmse_{b}"] < 0.16  # noise sd is 0.1
    assert fitted.steps == 8 and fitted.stride == 2 and fitted.freq == "1d"
    assert not fitted.net.training
    for k, b in enumerate(fitted.benchmarks):  # the learned correction is real: little shrinkage
        assert 0.8 <= fitted.metrics[f"corr_scale_{b}"] <= 1.0
        assert float(fitted.net.corr_scale[k]) == pytest.approx(fitted.metrics[f"corr_scale_{b}"])


@pytest.mark.parametrize("window_mean", [False, True])
def test_mlp_fit_learns_the_synthetic_correction_from_the_last_step(task, window_mean):
    f, y, r = task
    res = fit_model(f, y, r, TRAIN, VAL, _cfg(arch="mlp", mlp_window_mean=window_mean), progress=False)
    assert res.net.arch == "mlp" and res.net.encoder.window_mean is window_mean
    assert res.history[0]["train_nll"] > res.history[-1]["train_nll"] + 0.5
    for b in ("BTCUSDT", "CRYPTO_EW"):
        assert res.metrics[f"val_rmse_base_{b}"] > 0.3
        assert res.metrics[f"val_rmse_{b}"] < 0.16  # noise sd is 0.1
        assert 0.8 <= res.metrics[f"corr_scale_{b}"] <= 1.0


def test_interval_calibrated_on_validation_covers_90_percent_of_held_out_windows(task, fitted):
    f, y, _ = task
    cube, ts, syms = feature_cube(f.frame, fitted.feature_columns)
    yc, _, _ = feature_cube(y, fitted.benchmarks, ts, syms)
    t_mask = (ts >= pd.Timestamp(TEST[0], tz="UTC")) & (ts <= pd.Timestamp(TEST[1], tz="UTC"))
    pairs = sample_index(np.isfinite(yc).all(axis=2) & t_mask[:, None], fitted.lookback_bars, fitted.stride)
    out = predict_torch(fitted.net, gather_windows(cube, pairs, fitted.lookback_bars, fitted.stride))
    yt = yc[pairs[:, 0], pairs[:, 1]]
    cover = ((yt >= out["beta_lo"]) & (yt <= out["beta_hi"])).mean(axis=0)
    assert len(pairs) > 1000
    assert np.all((cover >= 0.85) & (cover <= 0.95)), cover


def test_two_fits_with_one_seed_give_identical_weights(task):
    f, y, r = task
    cfg = _cfg(epochs=2, max_train_samples=800)
    threads = torch.get_num_threads()
    a = fit_model(f, y, r, TRAIN, VAL, cfg.model_copy(update={"num_threads": 2}), progress=False)
    assert not torch.are_deterministic_algorithms_enabled()  # process-wide flag restored
    assert torch.get_num_threads() == threads
    a = fit_model(f, y, r, TRAIN, VAL, cfg, progress=False)
    b = fit_model(f, y, r, TRAIN, VAL, cfg, progress=False)
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    c = fit_model(f, y, r, TRAIN, VAL, cfg.model_copy(update={"seed": 1}), progress=False)
    assert not torch.equal(sa["delta_head.weight"], c.net.state_dict()["delta_head.weight"])


def test_transformer_fit_writes_nothing_into_the_working_directory(task, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f, y, r = task
    res = fit_model(
        f, y, r, TRAIN, VAL, _cfg(arch="transformer", epochs=2, max_train_samples=800), progress=False
    )
    assert list(tmp_path.iterdir()) == []
    assert len(res.history) == 2 and res.n_train == 800
    assert np.isfinite(res.metrics["val_rmse_BTCUSDT"])


def test_fit_rejects_empty_ranges_and_unknown_benchmarks(task):
    f, y, r = task
    with pytest.raises(ValueError, match="no training windows"):
        fit_model(f, y, r, ("2030-01-01", "2030-02-01"), VAL, _cfg(), progress=False)
    with pytest.raises(ValueError, match="no base beta column for benchmark"):
        fit_model(f, y, r, TRAIN, VAL, _cfg(), benchmarks=["ETHUSDT"], progress=False)


def test_target_cube_drops_the_asset_against_itself():
    """Even when a caller's targets hold BTC-vs-BTC = 1, fit_model never sees them."""
    from adaptive_beta.training.fit import _target_cube

    ts = pd.date_range("2021-01-01", periods=3, freq="D", tz="UTC")
    idx = pd.MultiIndex.from_product([ts, ["BTCUSDT", "ETHUSDT"]], names=["timestamp", "symbol"])
    targets = pd.DataFrame({"BTCUSDT": 1.0, "CRYPTO_EW": 0.9}, index=idx)
    y = _target_cube(targets, ["BTCUSDT", "CRYPTO_EW"], ts, ["BTCUSDT", "ETHUSDT"])
    assert np.isnan(y[:, 0, 0]).all()
    np.testing.assert_array_equal(y[:, 1, 0], 1.0)
    np.testing.assert_allclose(y[:, :, 1], 0.9, rtol=1e-6)


def test_mse_loss_trains_the_mean_on_squared_error_and_the_scale_on_detached_residuals():
    from adaptive_beta.models.networks import BetaNet
    from adaptive_beta.training.lit_module import BetaLitModule

    torch.manual_seed(0)
    net = BetaNet(4, [0], hidden=8, dropout=0.0)
    with torch.no_grad():
        net.delta_head.weight.normal_(std=0.3)
    x = torch.randn(32, 5, 4)
    y = x[:, -1, :1] + 0.5 * torch.randn(32, 1)
    y[3] = float("nan")
    batch = {"x": x, "y": y, "w": torch.ones(32), "regime": torch.full((32,), -1)}
    grads = []
    for log_sigma_bias in (-2.0, 1.0):  # the scale must not change the mean's gradient
        with torch.no_grad():
            net.log_sigma_head.bias.fill_(log_sigma_bias)
        module = BetaLitModule(net, 1e-3, 0.0, 0.0, loss="mse")
        net.zero_grad()
        module._step(batch, "train").backward()
        grads.append(net.delta_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    beta, _, _ = net.heads(x)
    ok = torch.isfinite(y)
    expected = ((y[ok] - beta[ok]) ** 2).mean()
    net.zero_grad()
    expected.backward()
    torch.testing.assert_close(grads[1], net.delta_head.weight.grad)
    # the monitored validation loss is the plain beta MSE
    module = BetaLitModule(net, 1e-3, 0.0, 0.2, loss="mse")
    with torch.no_grad():
        module._step(batch, "val")
    assert module._epoch_losses("val")["val_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_fit_with_an_ensemble_of_seeds_beats_the_base_and_calibrates(task):
    f, y, r = task
    cfg = _cfg(epochs=4, loss="mse", n_members=3)
    fit = fit_model(f, y, r, TRAIN, VAL, cfg, progress=False)
    from adaptive_beta.models.networks import BetaEnsemble

    assert isinstance(fit.net, BetaEnsemble) and len(fit.net.members) == 3
    for b in fit.benchmarks:
        assert fit.metrics[f"val_rmse_{b}"] < fit.metrics[f"val_rmse_base_{b}"]
        assert 0.8 <= fit.metrics[f"val_coverage90_{b}"] <= 1.0


def test_best_epoch_checkpoint_holds_the_restored_weights_and_only_that_epoch(task, tmp_path):
    """ModelCheckpoint (save_top_k=1 on val_loss) keeps the epoch the module restores: its weights
    are the fit's trained weights (the calibration buffers are set after the fit, so not compared)."""
    f, y, r = task
    res = fit_model(
        f,
        y,
        r,
        TRAIN,
        VAL,
        _cfg(epochs=4, patience=4, max_train_samples=800),
        progress=False,
        checkpoint_dir=tmp_path,
    )
    assert len(res.checkpoints) == 1
    files = list((tmp_path / "member0").iterdir())
    assert files == [Path(res.checkpoints[0])] and files[0].name == f"best-epoch={res.best_epoch}.ckpt"
    ckpt = torch.load(res.checkpoints[0], map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == res.best_epoch
    state = res.net.state_dict()
    trained = [k for k, _ in res.net.named_parameters()]
    assert len(trained) > 4
    for k in trained:
        assert torch.equal(ckpt["state_dict"][f"net.{k}"], state[k]), k
    assert res.best_epoch == int(np.argmin([e["val_loss"] for e in res.history]))
    # keeping a checkpoint changes nothing in the model itself (the shipped bundle stays the same)
    plain = fit_model(f, y, r, TRAIN, VAL, _cfg(epochs=4, patience=4, max_train_samples=800), progress=False)
    assert plain.checkpoints == [] and plain.best_epoch == res.best_epoch
    for k, v in plain.net.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_trainer_options_default_to_auto_accelerator_and_change_the_fit_when_set(task):
    """accelerator "auto" is the CPU here and gives the same weights as "cpu"; accumulating two
    batches per optimiser step (a [trainer] option) gives different ones."""
    f, y, r = task
    cfg = _cfg(epochs=2, max_train_samples=800)
    auto = fit_model(f, y, r, TRAIN, VAL, cfg, progress=False)
    cpu = fit_model(f, y, r, TRAIN, VAL, cfg, progress=False, trainer=TrainerConfig(accelerator="cpu"))
    acc = fit_model(
        f, y, r, TRAIN, VAL, cfg, progress=False, trainer=TrainerConfig(accumulate_grad_batches=2)
    )
    assert TrainerConfig().accelerator == "auto" and auto.checkpoints == []
    w = "delta_head.weight"
    assert torch.equal(auto.net.state_dict()[w], cpu.net.state_dict()[w])
    assert float((auto.net.state_dict()[w] - acc.net.state_dict()[w]).abs().max()) > 1e-4
