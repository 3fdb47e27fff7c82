"""`ModelConfig`: every knob of the sequence model and its training loop, with defaults that run.

One source of truth for the defaults: the CLI, the notebooks and the walk-forward driver all build
this object.  Durations (lookback, decay half-life) are strings converted to bars only when the
panel frequency is known, so a config means the same thing on daily and hourly data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from adaptive_beta.models.durations import Duration


class ModelConfig(BaseModel):
    """Architecture, window geometry, optimisation and calibration of a `BetaNet` fit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # --- architecture -------------------------------------------------------------------------
    # encoder behind the common BetaNet heads: a sequence model, or an MLP on the last step
    arch: Literal["gru", "transformer", "mlp"] = "gru"
    # width of the encoder state and of the heads; small on purpose: realised-beta targets are noisy
    # and a wide net fits the noise (chosen on a simulator of another seed, see README)
    hidden: int = Field(16, ge=4, le=512)
    layers: int = Field(1, ge=1, le=4)  # stacked GRU layers / transformer encoder layers / MLP hidden layers
    heads: int = Field(4, ge=1, le=16)  # attention heads (transformer only; must divide `hidden`)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)  # between layers and in the heads, training only
    mlp_window_mean: bool = False  # mlp only: also feed the mean of the window's steps
    n_regimes: int = Field(3, ge=2)  # classes of the regime head (REGIME_NAMES: calm, volatile, crash)

    # --- window geometry ----------------------------------------------------------------------
    lookback: Duration = "64d"  # history each forecast sees, as a DURATION (bars = lookback / freq)
    max_steps: int = Field(
        32, ge=2, le=512
    )  # longest sequence fed to the net; a stride subsamples longer lookbacks

    # --- optimisation -------------------------------------------------------------------------
    epochs: int = Field(30, ge=1)  # upper bound; early stopping usually ends sooner
    patience: int = Field(5, ge=1)  # epochs without a better validation loss before stopping
    lr: float = Field(
        1e-3, gt=0
    )  # AdamW learning rate (3e-3 and 3e-4 were worse on real 8h perps validation)
    weight_decay: float = Field(1e-2, ge=0)  # AdamW decoupled weight decay (strong: noisy targets)
    batch_size: int = Field(256, ge=1)  # windows per optimiser step
    seed: int = 0  # seeds torch, numpy and the sample subsampling: two fits with one seed are identical
    regime_loss_weight: float = Field(
        0.2, ge=0
    )  # weight of the forward-regime cross-entropy next to the beta NLL
    decay_halflife: Duration | None = (
        "365d"  # time-decay of sample weights (recent years weigh more); None = equal weights
    )
    max_train_samples: int = Field(20_000, ge=1)  # random subsample of training windows, for speed
    grad_clip: float = Field(1.0, gt=0)  # gradient-norm clip; NLL gradients spike when sigma is small

    # "nll": Gaussian NLL for mean and scale, early stopping on NLL + regime CE (the old default);
    # "mse": squared error for the mean, scale fitted on detached residuals, early stopping on
    # validation beta MSE only (the scored metric)
    loss: Literal["nll", "mse"] = "nll"
    n_members: int = Field(1, ge=1, le=16)  # seeds averaged into one ensemble (one ONNX graph)
    shrink_correction: bool = True  # fit a [0, 1] scale of the correction on validation (least squares)

    # --- calibration and runtime --------------------------------------------------------------
    interval_level: float = Field(
        0.9, gt=0.5, lt=1.0
    )  # central coverage of [beta_lo, beta_hi], calibrated on validation
    num_threads: int = Field(1, ge=1)  # torch intra-op threads during the fit (machines are shared)

    def model_post_init(self, __context) -> None:
        if self.arch == "transformer" and self.hidden % self.heads != 0:
            raise ValueError(f"ModelConfig: hidden={self.hidden} must be divisible by heads={self.heads}")
