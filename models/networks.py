"""`BetaNet`: an encoder (GRU, Transformer or last-step MLP) with multi-task heads that CORRECT a classical beta.

The only module in `models/` that imports torch (serving runs the ONNX export of this graph).

Why a correction: the shrunk Welch beta is a strong baseline; the network predicts
delta_k = beta_k - base_k from the recent path of features, with the delta head zero-initialised
so that an untrained net equals the baseline exactly.  Normalisation (training mean/std, NaN -> 0)
lives inside the graph as buffers, so the bundle's input is RAW features and serving cannot apply
the wrong statistics.

Outputs of `forward(x)` (the exported signature), with x: [B, L, F] raw float32 features:
    beta        [B, K]  base + delta
    beta_lo     [B, K]  beta - z * sigma * calib_scale   (central `level` interval)
    beta_hi     [B, K]  beta + z * sigma * calib_scale
    regime_prob [B, R]  softmax of the regime logits (forward regime)
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch
from torch import nn

OUTPUT_NAMES = ("beta", "beta_lo", "beta_hi", "regime_prob")
LOG_SIGMA_MIN, LOG_SIGMA_MAX = -7.0, 3.0  # sigma in [1e-3, 20]: keeps the NLL finite
Z_CLIP = 10.0  # normalised features are clipped to +-10 sd (one bad print must not dominate)


class GRUEncoder(nn.Module):
    """Multi-layer GRU over [B, L, H_in]; returns the last step's output [B, H]."""

    def __init__(self, n_in: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        self.gru = nn.GRU(
            n_in, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out, _ = self.gru(z)  # [B, L, H]
        return out[:, -1]  # [B, H]


def sinusoidal_positions(length: int | torch.SymInt, dim: int, device=None) -> torch.Tensor:
    """[L, dim] sinusoidal encoding of the lag (steps BEFORE the last one), so step L-1 is lag 0.

    Counting from the end makes the encoding length-agnostic: the newest observation always has
    the same code whatever the sequence length.
    """
    lag = torch.arange(length, device=device, dtype=torch.float32).flip(0).unsqueeze(1)  # [L, 1]
    freqs = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    angles = lag * freqs  # [L, dim/2]
    pe = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1)  # [L, dim/2, 2]
    return pe.reshape(angles.shape[0], -1)[:, :dim]  # [L, dim]


class TransformerEncoderNet(nn.Module):
    """Linear embedding + lag positions + nn.TransformerEncoder; returns the last token [B, H]."""

    def __init__(self, n_in: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Linear(n_in, hidden)
        layer = nn.TransformerEncoderLayer(
            d_model=hidden,
            nhead=heads,
            dim_feedforward=2 * hidden,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.embed(z)  # [B, L, H]
        h = h + sinusoidal_positions(h.shape[1], self.hidden, device=h.device).unsqueeze(0)
        h = self.encoder(h)  # [B, L, H]
        return self.norm(h[:, -1])  # [B, H]


class LastStepMLP(nn.Module):
    """MLP on the window's last step (optionally beside the window's mean); returns [B, H].

    The features already summarise the past (rolling, EWMA and Welch betas over many horizons),
    so the 32 steps of a window are near-duplicates: with a few dozen independent 30-day periods
    per fold, a model of the last step has far fewer weights to fit noise with (issue 10).
    """

    def __init__(self, n_in: int, hidden: int, layers: int, dropout: float, window_mean: bool = False):
        super().__init__()
        self.window_mean = window_mean
        width = 2 * n_in if window_mean else n_in
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks += [nn.Linear(width if i == 0 else hidden, hidden), nn.GELU()]
            if i < layers - 1:
                blocks.append(nn.Dropout(dropout))
        self.mlp = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z[:, -1]  # [B, F]
        if self.window_mean:
            h = torch.cat([h, z.mean(dim=1)], dim=-1)  # [B, 2F]
        return self.mlp(h)  # [B, H]


class BetaNet(nn.Module):
    """Encoder + heads: beta correction per benchmark, log-sigma per benchmark, regime logits.

    n_features: F input columns; base_index: for each of the K benchmarks, the column of x holding
    the base (Welch) beta; mean/std: [F] training statistics (raw feature scale); window_mean:
    arch "mlp" only, feed the window's mean beside its last step.
    """

    def __init__(
        self,
        n_features: int,
        base_index: list[int],
        *,
        arch: str = "gru",
        hidden: int = 32,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.1,
        n_regimes: int = 3,
        interval_level: float = 0.9,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
        init_sigma: float = 0.3,
        window_mean: bool = False,
    ):
        super().__init__()
        if any(not 0 <= i < n_features for i in base_index):
            raise ValueError(f"base_index {base_index} out of range for {n_features} features")
        self.arch = arch
        self.n_features = n_features
        self.n_bench = len(base_index)
        self.register_buffer("base_index", torch.tensor(base_index, dtype=torch.long))  # [K]
        self.register_buffer("mean", torch.zeros(n_features) if mean is None else mean.float().clone())  # [F]
        self.register_buffer("std", torch.ones(n_features) if std is None else std.float().clone())  # [F]
        self.register_buffer("calib_scale", torch.ones(self.n_bench))  # [K], set after training
        # [K] shrinkage of the learned correction, fitted on validation after training: 0 means the
        # net adds nothing to the base beta, 1 the full correction (guards against noisy targets)
        self.register_buffer("corr_scale", torch.ones(self.n_bench))
        z = NormalDist().inv_cdf(0.5 + interval_level / 2)  # 1.6449 for a 90 % interval
        self.register_buffer("z", torch.tensor(z, dtype=torch.float32))
        if arch == "gru":
            self.encoder: nn.Module = GRUEncoder(n_features, hidden, layers, dropout)
        elif arch == "transformer":
            self.encoder = TransformerEncoderNet(n_features, hidden, layers, heads, dropout)
        elif arch == "mlp":
            self.encoder = LastStepMLP(n_features, hidden, layers, dropout, window_mean)
        else:
            raise ValueError(f"unknown arch {arch!r}; expected 'gru', 'transformer' or 'mlp'")
        self.drop = nn.Dropout(dropout)
        self.delta_head = nn.Linear(hidden, self.n_bench)
        self.log_sigma_head = nn.Linear(hidden, self.n_bench)
        self.regime_head = nn.Linear(hidden, n_regimes)
        nn.init.zeros_(self.delta_head.weight)  # untrained net == base beta
        nn.init.zeros_(self.delta_head.bias)
        nn.init.normal_(self.log_sigma_head.weight, std=1e-3)
        nn.init.constant_(self.log_sigma_head.bias, math.log(init_sigma))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, F] raw -> standardised, NaN -> 0 (the training mean), clipped to +-Z_CLIP."""
        z = (x - self.mean) / self.std
        z = torch.where(torch.isnan(z), torch.zeros_like(z), z)
        return z.clamp(-Z_CLIP, Z_CLIP)

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training view: (beta [B, K], log_sigma [B, K], regime_logits [B, R])."""
        base = x[:, -1].index_select(1, self.base_index)  # [B, K], raw last step
        h = self.drop(self.encoder(self.normalise(x)))  # [B, H]
        beta = base + self.corr_scale * self.delta_head(h)  # [B, K]
        log_sigma = self.log_sigma_head(h).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)  # [B, K]
        return beta, log_sigma, self.regime_head(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        beta, log_sigma, logits = self.heads(x)
        half = self.z * torch.exp(log_sigma) * self.calib_scale  # [B, K]
        return beta, beta - half, beta + half, torch.softmax(logits, dim=-1)

    def set_normalization(self, mean, std) -> None:
        """Copy training statistics ([F] each) into the buffers; std <= 1e-8 becomes 1."""
        mean_t = torch.as_tensor(mean, dtype=torch.float32)
        std_t = torch.as_tensor(std, dtype=torch.float32)
        std_t = torch.where(torch.isfinite(std_t) & (std_t > 1e-8), std_t, torch.ones_like(std_t))
        mean_t = torch.where(torch.isfinite(mean_t), mean_t, torch.zeros_like(mean_t))
        self.mean.copy_(mean_t)
        self.std.copy_(std_t)


class BetaEnsemble(nn.Module):
    """The average of several `BetaNet`s trained with different seeds, as ONE exportable graph.

    Same interface as `BetaNet` (`heads`, `forward`, `corr_scale`, `calib_scale`, `z`, `mean`,
    `std`, `base_index`): the beta is base + corr_scale * mean of the members' corrections, sigma
    the root mean of the members' variances, the regime probabilities the mean of the members'
    (returned as log-probabilities, so softmax gives them back).  Averaging seeds removes the
    part of each correction that is optimisation noise; the shrinkage and the interval are then
    fitted on the ensemble, not the members.
    """

    def __init__(self, members: list[BetaNet]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        first = members[0]
        self.members = nn.ModuleList(members)
        self.arch, self.n_features, self.n_bench = first.arch, first.n_features, first.n_bench
        for name in ("base_index", "mean", "std", "z"):
            self.register_buffer(name, getattr(first, name).clone())
        self.register_buffer("calib_scale", torch.ones(self.n_bench))
        self.register_buffer("corr_scale", torch.ones(self.n_bench))
        for m in members:  # members give their raw correction; the ensemble shrinks the average
            m.corr_scale.fill_(1.0)
            m.calib_scale.fill_(1.0)

    @property
    def delta_head(self) -> nn.Linear:  # sizes for the exporter
        return self.members[0].delta_head

    @property
    def regime_head(self) -> nn.Linear:
        return self.members[0].regime_head

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        base = x[:, -1].index_select(1, self.base_index)  # [B, K]
        deltas, variances, probs = [], [], []
        for m in self.members:
            b, ls, logits = m.heads(x)
            deltas.append(b - base)
            variances.append(torch.exp(2.0 * ls))
            probs.append(torch.softmax(logits, dim=-1))
        n = float(len(self.members))
        delta = torch.stack(deltas).sum(0) / n
        log_sigma = 0.5 * torch.log(torch.stack(variances).sum(0) / n)
        log_p = torch.log((torch.stack(probs).sum(0) / n).clamp_min(1e-12))
        return base + self.corr_scale * delta, log_sigma, log_p

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        beta, log_sigma, logits = self.heads(x)
        half = self.z * torch.exp(log_sigma) * self.calib_scale  # [B, K]
        return beta, beta - half, beta + half, torch.softmax(logits, dim=-1)


def build_net(cfg, n_features: int, base_index: list[int]) -> BetaNet:
    """A `BetaNet` from a `adaptive_beta.training.model_config.ModelConfig` (duck-typed to keep models/ free of training/)."""
    return BetaNet(
        n_features,
        base_index,
        arch=cfg.arch,
        hidden=cfg.hidden,
        layers=cfg.layers,
        heads=cfg.heads,
        dropout=cfg.dropout,
        n_regimes=cfg.n_regimes,
        interval_level=cfg.interval_level,
        window_mean=getattr(cfg, "mlp_window_mean", False),
    )
