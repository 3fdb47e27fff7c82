"""Windows over the feature cube as a LightningDataModule.

Windows are cut per batch from the [T, N, F] cube (no pre-materialised [S, L, F] copy), so memory
stays at one cube however many samples are drawn.  A sample is a (t, n) pair; its targets are the
forward betas y[t, n, :] (NaN = masked in the loss), the forward regime r[t] (-1 = unknown) and a
time-decay weight.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from adaptive_beta.models.features.windows import gather_windows


def time_decay_weights(
    t_rows: np.ndarray, timestamps: pd.DatetimeIndex, halflife: pd.Timedelta | None
) -> np.ndarray:
    """Weight 0.5 ** (age / halflife) of each sample, age measured from the newest sample; mean 1.

    The average beta of crypto assets shifts between years, so recent windows should count more.
    """
    if halflife is None or len(t_rows) == 0:
        return np.ones(len(t_rows), dtype=np.float32)
    ts = pd.DatetimeIndex(timestamps).as_unit("ns").asi8[t_rows].astype(np.float64)
    age = (ts.max() - ts) / float(halflife.value)
    w = np.power(0.5, age)
    return (w / w.mean()).astype(np.float32)


class WindowDataset(Dataset):
    """Batched map-style dataset: `ds[list_of_indices]` returns one batch dict of tensors."""

    def __init__(
        self,
        cube: np.ndarray,  # [T, N, F] float32 raw features
        targets: np.ndarray,  # [T, N, K] float32 forward betas (NaN = unknown)
        regimes: np.ndarray,  # [T] int64 forward regime (-1 = unknown)
        pairs: np.ndarray,  # [S, 2] (t, n)
        weights: np.ndarray,  # [S] float32
        lookback_bars: int,
        stride: int,
    ):
        self.cube, self.targets, self.regimes = cube, targets, regimes
        self.pairs, self.weights = pairs, weights
        self.lookback_bars, self.stride = lookback_bars, stride

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, idx) -> dict[str, torch.Tensor]:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        p = self.pairs[idx]  # [B, 2]
        return {
            "x": torch.from_numpy(gather_windows(self.cube, p, self.lookback_bars, self.stride)),  # [B, L, F]
            "y": torch.from_numpy(self.targets[p[:, 0], p[:, 1]]),  # [B, K]
            "regime": torch.from_numpy(self.regimes[p[:, 0]]),  # [B]
            "w": torch.from_numpy(self.weights[idx]),  # [B]
        }


class WindowDataModule(LightningDataModule):
    """Train/val loaders over one cube; shuffling uses a seeded generator (deterministic fits)."""

    def __init__(self, train: WindowDataset, val: WindowDataset, batch_size: int, seed: int = 0):
        super().__init__()
        self.train, self.val = train, val
        self.batch_size, self.seed = batch_size, seed

    def _loader(self, ds: WindowDataset, shuffle: bool) -> DataLoader:
        if shuffle:
            gen = torch.Generator().manual_seed(self.seed)
            base = RandomSampler(range(len(ds)), generator=gen)
        else:
            base = SequentialSampler(range(len(ds)))
        sampler = BatchSampler(base, batch_size=self.batch_size, drop_last=False)
        return DataLoader(ds, sampler=sampler, batch_size=None, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val, shuffle=False)


class SyntheticFeatures:
    """Duck-typed `FeatureTable` (frame, groups, base_columns) for tests and notebooks."""

    def __init__(self, frame: pd.DataFrame, groups: dict[str, str], base_columns: dict[str, str]):
        self.frame, self.groups, self.base_columns = frame, groups, base_columns


def make_synthetic_task(
    n_time: int = 400, n_assets: int = 6, noise: float = 0.1, seed: int = 0, start: str = "2021-01-01"
) -> tuple[SyntheticFeatures, pd.DataFrame, pd.DataFrame]:
    """A learnable task with a known answer: forward beta = base + f(recent features) + noise.

    Features per (t, asset): `welch_BTCUSDT`, `welch_CRYPTO_EW` (base betas, slow random walks),
    `x1`, `x2` (AR(1) signals), `x3` (a regime driver shared across assets) and `x4` (pure noise,
    with 5 % NaN).  Targets: y_BTC = base_BTC + 0.5 tanh(x1_t) + noise, y_EW = base_EW - 0.4 x2_t
    + noise; forward regime = 0/1/2 by terciles of x3_t.  Returns (features, targets, regimes).
    """
    rng = np.random.default_rng(seed)
    ts = pd.date_range(start, periods=n_time, freq="1D", tz="UTC")
    syms = [f"A{i}USDT" for i in range(n_assets)]

    def ar1(phi: float, shape) -> np.ndarray:
        e = rng.standard_normal(shape)
        out = np.empty(shape)
        out[0] = e[0]
        for t in range(1, shape[0]):
            out[t] = phi * out[t - 1] + np.sqrt(1 - phi**2) * e[t]
        return out

    base_btc = 1.0 + 0.3 * np.cumsum(rng.standard_normal((n_time, n_assets)), axis=0) / np.sqrt(n_time)
    base_ew = 0.8 + 0.3 * np.cumsum(rng.standard_normal((n_time, n_assets)), axis=0) / np.sqrt(n_time)
    x1, x2 = ar1(0.9, (n_time, n_assets)), ar1(0.8, (n_time, n_assets))
    x3 = np.repeat(ar1(0.95, (n_time, 1)), n_assets, axis=1)
    x4 = rng.standard_normal((n_time, n_assets))
    x4[rng.random(x4.shape) < 0.05] = np.nan
    y_btc = base_btc + 0.5 * np.tanh(x1) + noise * rng.standard_normal((n_time, n_assets))
    y_ew = base_ew - 0.4 * x2 + noise * rng.standard_normal((n_time, n_assets))
    idx = pd.MultiIndex.from_product([ts, syms], names=["timestamp", "symbol"])
    cols = {
        "welch_BTCUSDT": base_btc,
        "welch_CRYPTO_EW": base_ew,
        "x1": x1,
        "x2": x2,
        "x3": x3,
        "x4": x4,
    }
    frame = pd.DataFrame({k: v.reshape(-1) for k, v in cols.items()}, index=idx)
    targets = pd.DataFrame({"BTCUSDT": y_btc.reshape(-1), "CRYPTO_EW": y_ew.reshape(-1)}, index=idx)
    q = np.quantile(x3[:, 0], [1 / 3, 2 / 3])
    regimes = pd.DataFrame(
        {"current": np.digitize(x3[:, 0], q), "forward": np.digitize(x3[:, 0], q)}, index=ts
    )
    groups = {
        "welch_BTCUSDT": "crypto_benchmark",
        "welch_CRYPTO_EW": "crypto_benchmark",
        "x1": "own_history",
        "x2": "own_history",
        "x3": "volatility",
        "x4": "equity",
    }
    base = {"BTCUSDT": "welch_BTCUSDT", "CRYPTO_EW": "welch_CRYPTO_EW"}
    return SyntheticFeatures(frame, groups, base), targets, regimes
