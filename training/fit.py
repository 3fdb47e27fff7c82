"""`fit_model`: feature table + forward targets -> trained, calibrated `BetaNet` (deterministic on CPU).

The walk-forward driver calls this once per fold with timestamp ranges (the embargo between train
and validation is the caller's business: pass ranges that already leave a gap >= the horizon).
Nothing is written into the repository: Lightning runs in a temporary folder with loggers off;
the best-validation weights are kept in memory and restored at the end.  Given a `checkpoint_dir`,
Lightning's ModelCheckpoint also writes the best epoch's checkpoint there (the final fit of
`abeta train` logs it to its MLflow run).  Where and how Lightning runs (accelerator "auto",
precision, ...) comes from `TrainerConfig`, the `[trainer]` table of the training config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from adaptive_beta.models.data.schema import infer_freq
from adaptive_beta.models.durations import format_freq, parse_duration
from adaptive_beta.models.features.windows import feature_cube, gather_windows, sample_index, window_geometry
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.trainer_config import TrainerConfig

N_PARITY_WINDOWS = 64  # real validation windows kept with the fit for the ONNX parity check


@dataclass
class FitResult:
    """A trained net (eval mode, calib_scale set) and everything the bundle export needs."""

    net: object  # adaptive_beta.models.networks.BetaNet, eval mode
    history: list[dict]  # per epoch: epoch, train_loss/nll/ce, val_loss/nll/ce
    mean: np.ndarray  # [F] training feature means (raw scale), also inside the net
    std: np.ndarray  # [F]
    feature_columns: list[str]
    base_columns: dict[str, str]  # benchmark -> base beta column
    groups: dict[str, str]  # column -> feature group
    benchmarks: list[str]
    best_epoch: int
    calib_scale: np.ndarray  # [K]
    cfg: ModelConfig
    freq: str  # "1d", "8h", ...
    lookback_bars: int
    stride: int
    steps: int
    train_range: tuple[str, str]
    val_range: tuple[str, str]
    n_train: int  # training windows used (after subsampling)
    n_val: int
    metrics: dict[str, float] = field(default_factory=dict)  # validation metrics after calibration
    sample_windows: np.ndarray | None = None  # [<=64, L, F] real validation windows (parity checks)
    checkpoints: list[str] = field(default_factory=list)  # best-epoch .ckpt per member (checkpoint_dir)


def _range_mask(timestamps: pd.DatetimeIndex, rng) -> np.ndarray:
    lo, hi = (pd.Timestamp(v) if v is not None else None for v in rng)
    lo = lo.tz_localize("UTC") if lo is not None and lo.tzinfo is None else lo
    hi = hi.tz_localize("UTC") if hi is not None and hi.tzinfo is None else hi
    m = np.ones(len(timestamps), dtype=bool)
    if lo is not None:
        m &= timestamps >= lo
    if hi is not None:
        m &= timestamps <= hi
    return m


def _target_cube(targets: pd.DataFrame, benchmarks, timestamps, symbols) -> np.ndarray:
    missing = [b for b in benchmarks if b not in targets.columns]
    if missing:
        raise ValueError(f"targets lack benchmark column(s) {missing}; have {list(targets.columns)}")
    y, _, _ = feature_cube(targets, list(benchmarks), timestamps, symbols)
    for k, b in enumerate(benchmarks):  # the asset IS the benchmark (BTC vs BTC): beta 1, no target
        y[:, [s == b for s in symbols], k] = np.nan
    return y  # [T, N, K]


def _regime_vector(regimes, timestamps) -> np.ndarray:
    if regimes is None:
        return np.full(len(timestamps), -1, dtype=np.int64)
    s = regimes["forward"] if isinstance(regimes, pd.DataFrame) else regimes
    v = s.reindex(timestamps).to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isfinite(v), v, -1).astype(np.int64)


@contextlib.contextmanager
def _quiet_lightning():
    names = ["lightning.pytorch", "lightning.fabric", "lightning", "pytorch_lightning"]
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        try:
            yield
        finally:
            for n, lvl in levels.items():
                logging.getLogger(n).setLevel(lvl)


def predict_torch(net, x: np.ndarray, batch_size: int = 4096) -> dict[str, np.ndarray]:
    """Eager forward pass of a BetaNet on raw windows [B, L, F] -> dict of numpy outputs."""
    import torch

    from adaptive_beta.models.networks import OUTPUT_NAMES

    was_training = net.training
    net.eval()
    outs: list[list[np.ndarray]] = [[] for _ in OUTPUT_NAMES]
    with torch.no_grad():
        for i in range(0, max(len(x), 1), batch_size):
            res = net(torch.as_tensor(np.asarray(x[i : i + batch_size], dtype=np.float32)))
            for j, r in enumerate(res):
                outs[j].append(r.numpy())
    net.train(was_training)
    return {name: np.concatenate(o, axis=0) for name, o in zip(OUTPUT_NAMES, outs, strict=True)}


def _heads_numpy(net, x: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    import torch

    betas, sigmas = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            b, ls, _ = net.heads(torch.as_tensor(x[i : i + batch_size]))
            betas.append(b.numpy())
            sigmas.append(torch.exp(ls).numpy())
    return np.concatenate(betas), np.concatenate(sigmas)


def correction_scale(y: np.ndarray, base: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Per-benchmark alpha_k in [0, 1] minimising sum (y - base - alpha * (beta - base))^2.

    Targets (realised forward betas) are noisy: a correction that fits training noise should
    not be applied at full strength.  alpha = 0 returns the base (Welch) beta unchanged.
    """
    out = np.ones(y.shape[1])
    for k in range(y.shape[1]):
        d = beta[:, k] - base[:, k]
        ok = np.isfinite(y[:, k]) & np.isfinite(d) & np.isfinite(base[:, k])
        den = float(np.sum(d[ok] ** 2))
        if ok.sum() >= 10 and den > 0:
            out[k] = float(np.clip(np.sum(d[ok] * (y[ok, k] - base[ok, k])) / den, 0.0, 1.0))
    return out


def calibration_scale(
    y: np.ndarray, beta: np.ndarray, sigma: np.ndarray, z: float, level: float
) -> np.ndarray:
    """Per-benchmark factor c_k so that |y - beta| <= z * sigma * c_k for a `level` share of finite targets.

    c_k = quantile_level(|y - beta| / sigma) / z; 1 where a benchmark has no finite target.
    """
    out = np.ones(y.shape[1])
    for k in range(y.shape[1]):
        ok = np.isfinite(y[:, k]) & np.isfinite(beta[:, k])
        if ok.sum() >= 10:
            r = np.abs(y[ok, k] - beta[ok, k]) / sigma[ok, k]
            out[k] = max(float(np.quantile(r, level)) / z, 1e-3)
    return out


def fit_model(
    features,
    targets: pd.DataFrame,
    regimes: pd.DataFrame | None,
    train_range: tuple,
    val_range: tuple,
    cfg: ModelConfig | None = None,
    benchmarks: list[str] | None = None,
    progress: bool = True,
    freq: pd.Timedelta | str | None = None,
    timestamps: pd.DatetimeIndex | None = None,
    callbacks: tuple = (),
    trainer: TrainerConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    members: list[MemberFit] | None = None,
) -> FitResult:
    """Train a BetaNet on windows ending in `train_range`, early-stop and calibrate on `val_range`.

    features: a `adaptive_beta.models.features.compute.FeatureTable` (frame indexed (timestamp, symbol), groups, base_columns).
    targets: forward betas indexed (timestamp, symbol), one column per benchmark (NaN allowed).
    regimes: indexed by timestamp with a `forward` column of regime codes (or None: no regime loss).
    train_range / val_range: (start, end) timestamps, inclusive; None = open.
    freq / timestamps: the panel's bar length and grid (default: inferred from the feature frame).
    callbacks: extra Lightning callbacks for every member's fit (e.g. `abeta tune`'s pruning).
    trainer: Lightning options (default `TrainerConfig()`: accelerator "auto", deterministic).
    checkpoint_dir: where each member's best-epoch checkpoint goes (`member<m>/`); None = none kept.
    members: the ensemble members already fitted elsewhere (`fit_member`, e.g. as Ray tasks), in
    member order; the rest (normalisation, calibration, metrics) is done here exactly as in-process.
    """
    cfg = cfg or ModelConfig()
    run = _TrainerRun(trainer or TrainerConfig(), Path(checkpoint_dir) if checkpoint_dir else None, callbacks)
    benchmarks = list(benchmarks or list(features.base_columns))
    data = fit_data(features, targets, regimes, benchmarks, cfg, freq, timestamps)
    base_cols = _base_columns(features, benchmarks)
    train_pairs, val_pairs = _window_pairs(data, train_range, val_range, cfg)
    mean, std = _normalisation(data.cube, data.in_train)
    if members is None:
        train_ds, val_ds = _datasets(data, train_pairs, val_pairs, cfg)
        nets, modules = _fit_members(
            data, mean, std, train_ds, val_ds, cfg, regimes is not None, progress, run
        )
    else:
        nets, modules = [m.net for m in members], members
    net = _ensemble(nets)
    xv, yv, beta_v, half, scale = _calibrate(net, data, val_pairs, cfg)
    module = modules[0]
    metrics = _validation_metrics(net, modules, benchmarks, data.base_index, xv, yv, beta_v, half, scale)
    pick = np.linspace(0, len(xv) - 1, min(N_PARITY_WINDOWS, len(xv))).astype(int)
    return FitResult(
        net=net,
        history=module.history,
        mean=mean.astype(np.float32),
        std=std.astype(np.float32),
        feature_columns=data.columns,
        base_columns=base_cols,
        groups=dict(getattr(features, "groups", {}) or {}),
        benchmarks=benchmarks,
        best_epoch=module.best_epoch,
        calib_scale=scale,
        cfg=cfg,
        freq=format_freq(data.freq),
        lookback_bars=data.geo.lookback_bars,
        stride=data.geo.stride,
        steps=data.geo.steps,
        train_range=tuple(str(v) for v in train_range),
        val_range=tuple(str(v) for v in val_range),
        n_train=len(train_pairs),
        n_val=len(val_pairs),
        metrics=metrics,
        sample_windows=xv[pick].copy(),
        checkpoints=[md.best_checkpoint for md in modules if getattr(md, "best_checkpoint", None)],
    )


@dataclass
class MemberFit:
    """One ensemble member fitted on its own (a Ray task's answer): its net with the best-validation
    weights and what `fit_model` reads of its Lightning module (duck-typed to it)."""

    net: object  # BetaNet, eval mode, on the CPU
    history: list[dict]
    best_epoch: int
    best_val: float
    best_checkpoint: str | None = None


def fit_data(features, targets, regimes, benchmarks, cfg: ModelConfig, freq=None, timestamps=None):
    """The dense arrays every fit of one model config reads (`_FitData`): built once per walk-forward
    when the members are Ray tasks, and put once in the object store."""
    base_cols = _base_columns(features, list(benchmarks))
    return _build_cubes(features, targets, regimes, list(benchmarks), base_cols, cfg, freq, timestamps)


def fit_member(
    data: _FitData,
    train_range: tuple,
    val_range: tuple,
    cfg: ModelConfig,
    member: int,
    has_regimes: bool,
    trainer: TrainerConfig | None = None,
) -> MemberFit:
    """Member `member` (seed `cfg.seed + member`) of the fit `fit_model` makes on these ranges, alone:
    the same windows, normalisation, seed and torch thread count, so a Ray task gives the same
    floats as the in-process loop (passed back through `fit_model(members=...)`)."""
    data = dataclasses.replace(data)  # in_train / in_val are per fit; the arrays stay shared
    train_pairs, val_pairs = _window_pairs(data, train_range, val_range, cfg)
    mean, std = _normalisation(data.cube, data.in_train)
    train_ds, val_ds = _datasets(data, train_pairs, val_pairs, cfg)
    run = _TrainerRun(trainer or TrainerConfig(), None, ())
    with _torch_threads(cfg.num_threads):
        net, module = _fit_one_member(
            data, mean, std, train_ds, val_ds, cfg, cfg.seed + member, has_regimes, False, run
        )
    return MemberFit(net, module.history, module.best_epoch, module.best_val)


@dataclass
class _TrainerRun:
    """How Lightning runs every member's fit: trainer options, checkpoint folder, extra callbacks."""

    options: TrainerConfig
    checkpoint_dir: Path | None
    callbacks: tuple = ()


@dataclass
class _FitData:
    """The panel as dense arrays on one time grid, shared by every step of `fit_model`."""

    columns: list[str]  # feature columns, in cube order
    base_index: list[int]  # cube column of each benchmark's base beta
    cube: np.ndarray  # [T, N, F] features
    ts: pd.DatetimeIndex
    freq: pd.Timedelta
    geo: object  # adaptive_beta.models.features.windows window geometry
    y: np.ndarray  # [T, N, K] targets
    reg: np.ndarray  # [T] regime codes, -1 = none
    pairs: np.ndarray  # [P, 2] (t, asset) window ends with finite base betas and a target
    in_train: np.ndarray  # [T] bool
    in_val: np.ndarray  # [T] bool
    symbols: list[str] = field(default_factory=list)  # asset of each cube column


def _base_columns(features, benchmarks: list[str]) -> dict[str, str]:
    """Benchmark -> base beta column; fail early because the net corrects this column and cannot do without it."""
    missing = [b for b in benchmarks if b not in features.base_columns]
    if missing:
        raise ValueError(
            f"no base beta column for benchmark(s) {missing}; FeatureTable.base_columns has {list(features.base_columns)}"
        )
    return {b: features.base_columns[b] for b in benchmarks}


def _build_cubes(
    features, targets, regimes, benchmarks, base_cols, cfg: ModelConfig, freq, timestamps
) -> _FitData:
    """Features, targets and regimes as dense [T, N, .] arrays on one grid, so windows are plain slicing.

    Also the candidate window ends: rows where every base beta is finite and some target is.
    """
    columns = list(features.frame.columns)
    base_index = [columns.index(base_cols[b]) for b in benchmarks]
    cube, ts, symbols = feature_cube(features.frame, columns, timestamps)
    if freq is None:
        freq = infer_freq(ts)
    freq = parse_duration(freq) if isinstance(freq, str) else pd.Timedelta(freq)
    geo = window_geometry(cfg.lookback, freq, cfg.max_steps)
    y = _target_cube(targets, benchmarks, ts, symbols)  # [T, N, K]
    reg = _regime_vector(regimes, ts)  # [T]
    valid = np.isfinite(cube[:, :, base_index]).all(axis=2) & np.isfinite(y).any(axis=2)  # [T, N]
    pairs = sample_index(valid, geo.lookback_bars, geo.stride)
    return _FitData(columns, base_index, cube, ts, freq, geo, y, reg, pairs, None, None, symbols)


def _window_pairs(data: _FitData, train_range, val_range, cfg: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation window ends by the range their end falls in (the caller leaves the embargo).

    Training windows are subsampled (seeded) to `max_train_samples` to bound the epoch cost.
    """
    data.in_train = _range_mask(data.ts, train_range)
    data.in_val = _range_mask(data.ts, val_range)
    train_pairs = data.pairs[data.in_train[data.pairs[:, 0]]]
    val_pairs = data.pairs[data.in_val[data.pairs[:, 0]]]
    if len(train_pairs) == 0:
        raise ValueError(
            f"no training windows in {train_range}: need finite base betas and targets after {data.geo.span} bars"
        )
    if len(val_pairs) == 0:
        raise ValueError(f"no validation windows in {val_range}: need finite base betas and targets")
    rng = np.random.default_rng(cfg.seed)
    if len(train_pairs) > cfg.max_train_samples:
        keep = np.sort(rng.choice(len(train_pairs), cfg.max_train_samples, replace=False))
        train_pairs = train_pairs[keep]
    return train_pairs, val_pairs


def _normalisation(cube: np.ndarray, in_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean/std over every training-period row (not only sampled window ends), so the
    statistics do not depend on subsampling; non-finite or ~constant columns get 0 / 1."""
    rows = cube[in_train].reshape(-1, cube.shape[2]).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(rows, axis=0)
        std = np.nanstd(rows, axis=0)
    mean = np.where(np.isfinite(mean), mean, 0.0)
    std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
    return mean, std


def _datasets(data: _FitData, train_pairs, val_pairs, cfg: ModelConfig):
    """Window datasets; training windows weighted by time decay (recent data counts more), validation unweighted."""
    from adaptive_beta.training.datasets import WindowDataset, time_decay_weights

    halflife = parse_duration(cfg.decay_halflife) if cfg.decay_halflife else None
    w_train = time_decay_weights(train_pairs[:, 0], data.ts, halflife)
    w_val = np.ones(len(val_pairs), dtype=np.float32)
    lb, stride = data.geo.lookback_bars, data.geo.stride
    train_ds = WindowDataset(data.cube, data.y, data.reg, train_pairs, w_train, lb, stride)
    val_ds = WindowDataset(data.cube, data.y, data.reg, val_pairs, w_val, lb, stride)
    return train_ds, val_ds


def _fit_members(
    data: _FitData,
    mean,
    std,
    train_ds,
    val_ds,
    cfg: ModelConfig,
    has_regimes: bool,
    progress: bool,
    run: _TrainerRun,
):
    """Fit `n_members` nets (seeds seed, seed+1, ...) with `cfg.num_threads` torch threads."""
    members, modules = [], []
    with _torch_threads(cfg.num_threads):
        for m in range(cfg.n_members):
            ckpt = run.checkpoint_dir / f"member{m}" if run.checkpoint_dir else None
            net, module = _fit_one_member(
                data, mean, std, train_ds, val_ds, cfg, cfg.seed + m, has_regimes, progress, run, ckpt
            )
            members.append(net)
            modules.append(module)
    return members, modules


@contextlib.contextmanager
def _torch_threads(n: int):
    """Fit with `n` torch threads (the floats depend on it: a Ray task and the in-process loop must
    agree), then restore the caller's thread and determinism settings: Trainer(deterministic=True)
    flips a process-wide flag."""
    import torch

    prev_threads = torch.get_num_threads()
    prev_det = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det[0], warn_only=prev_det[1])


def _callbacks(cfg: ModelConfig, run: _TrainerRun, ckpt_dir: Path | None) -> list:
    """Early stopping on the validation loss, a best-epoch ModelCheckpoint when asked, the caller's."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    out = [EarlyStopping(monitor="val_loss", patience=cfg.patience, mode="min", verbose=False)]
    if ckpt_dir is not None:  # save_top_k=1: the best epoch only (the one the module restores)
        out.append(
            ModelCheckpoint(
                dirpath=str(ckpt_dir), filename="best-{epoch}", monitor="val_loss", mode="min", save_top_k=1
            )
        )
    return [*out, *run.callbacks]


def _fit_one_member(
    data: _FitData,
    mean,
    std,
    train_ds,
    val_ds,
    cfg: ModelConfig,
    seed: int,
    has_regimes: bool,
    progress: bool,
    run: _TrainerRun,
    ckpt_dir: Path | None = None,
):
    """One seeded, deterministic Lightning fit with early stopping; returns the net with its
    best-validation weights (eval mode, on the CPU) and the module holding its history (and
    `best_checkpoint`, the path of the best epoch's checkpoint when `ckpt_dir` is given).

    Lightning runs in a temporary folder with loggers off: nothing lands in the repo.
    """
    import lightning.pytorch as pl

    from adaptive_beta.models.networks import build_net
    from adaptive_beta.training.datasets import WindowDataModule
    from adaptive_beta.training.lit_module import BetaLitModule

    with _quiet_lightning(), tempfile.TemporaryDirectory(prefix="abeta-fit-") as tmp:
        pl.seed_everything(seed, workers=True, verbose=False)
        net = build_net(cfg, len(data.columns), data.base_index)
        net.set_normalization(mean, std)
        module = BetaLitModule(
            net,
            cfg.lr,
            cfg.weight_decay,
            cfg.regime_loss_weight if has_regimes else 0.0,
            loss=cfg.loss,
        )
        dm = WindowDataModule(train_ds, val_ds, cfg.batch_size, seed)
        callbacks = _callbacks(cfg, run, ckpt_dir)
        trainer = pl.Trainer(
            max_epochs=cfg.epochs,
            **run.options.trainer_kwargs(),
            logger=False,
            enable_checkpointing=ckpt_dir is not None,
            enable_model_summary=False,
            enable_progress_bar=progress,
            num_sanity_val_steps=0,
            gradient_clip_val=cfg.grad_clip,
            default_root_dir=tmp,
            callbacks=callbacks,
        )
        trainer.fit(module, datamodule=dm)
    module.best_checkpoint = (trainer.checkpoint_callback.best_model_path or None) if ckpt_dir else None
    net.cpu()  # a GPU fit ("auto") hands back a CPU net: export, calibration and ONNX run there
    if module.best_state is not None:
        net.load_state_dict(module.best_state)
    net.eval()
    return net, module


def _ensemble(members: list):
    """One net stays itself (the bundle format is unchanged); several are averaged by `BetaEnsemble`."""
    if len(members) == 1:
        return members[0]
    from adaptive_beta.models.networks import BetaEnsemble

    net = BetaEnsemble(members)
    net.eval()
    return net


def _calibrate(net, data: _FitData, val_pairs, cfg: ModelConfig):
    """On validation: shrink the correction (alpha, optional), then scale the interval to its level.

    Validation, not training, because the net fits training noise; order matters: the interval
    is calibrated on the shrunk betas.  Returns (xv, yv, beta_v, half-width, calib scale).
    """
    import torch

    xv = gather_windows(data.cube, val_pairs, data.geo.lookback_bars, data.geo.stride)
    yv = data.y[val_pairs[:, 0], val_pairs[:, 1]]
    beta_v, sigma_v = _heads_numpy(net, xv)
    if cfg.shrink_correction:
        base_v = xv[:, -1, data.base_index].astype(np.float64)
        alpha = correction_scale(yv, base_v, beta_v)
        net.corr_scale.copy_(torch.as_tensor(alpha, dtype=torch.float32))
        beta_v, sigma_v = _heads_numpy(net, xv)
    scale = calibration_scale(yv, beta_v, sigma_v, float(net.z), cfg.interval_level)
    net.calib_scale.copy_(torch.as_tensor(scale, dtype=torch.float32))
    half = float(net.z) * sigma_v * scale
    return xv, yv, beta_v, half, scale


def _validation_metrics(
    net, modules, benchmarks, base_index, xv, yv, beta_v, half, scale
) -> dict[str, float]:
    """Validation loss/epochs and, per benchmark, RMSE vs the base beta, coverage and the two
    scales, so a run's record shows whether the correction beat the classical beta."""
    module = modules[0]
    metrics: dict[str, float] = {
        "val_loss": float(np.mean([md.best_val for md in modules])),
        "best_epoch": float(module.best_epoch),
        "best_epoch_mean": float(np.mean([md.best_epoch for md in modules])),
    }
    for k, b in enumerate(benchmarks):
        ok = np.isfinite(yv[:, k])
        base = xv[ok, -1, base_index[k]]
        metrics[f"val_rmse_{b}"] = float(np.sqrt(np.mean((yv[ok, k] - beta_v[ok, k]) ** 2)))
        metrics[f"val_rmse_base_{b}"] = float(np.sqrt(np.mean((yv[ok, k] - base) ** 2)))
        metrics[f"val_n_{b}"] = float(ok.sum())
        metrics[f"val_coverage90_{b}"] = float(np.mean(np.abs(yv[ok, k] - beta_v[ok, k]) <= half[ok, k]))
        metrics[f"calib_scale_{b}"] = float(scale[k])
        metrics[f"corr_scale_{b}"] = float(net.corr_scale[k])
    return metrics
