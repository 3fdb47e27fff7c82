"""`TrainerConfig`: the Lightning Trainer options a training config may change (`[trainer]` table).

Why a typed table rather than free `**kwargs` for `lightning.Trainer`: a typo (`acelerator`) must be
an error naming the key, not a silently ignored option, and options that would change what a fit
means (max_epochs, early stopping, gradient clipping) stay in `ModelConfig`, where they are part of
the model's identity.  The defaults reproduce earlier results exactly: on a CPU-only machine
"auto" is the CPU, one device, 32-bit, deterministic.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class TrainerConfig(BaseModel):
    """Where and how Lightning runs each fit; none of these changes the data a fit sees."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # "auto": a GPU (CUDA or Apple MPS) where one is present, else the CPU
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    # one device: a fit is small, and several devices (DDP) would change the batches each step sees
    devices: int = Field(1, ge=1, le=1)
    # "16-mixed"/"bf16-mixed" speed up a GPU; weights stay float32, so the ONNX export is unchanged
    precision: Literal["32-true", "16-mixed", "bf16-mixed"] = "32-true"
    # deterministic algorithms: two fits with one seed give identical weights (tests rely on it)
    deterministic: bool = True
    accumulate_grad_batches: int = Field(1, ge=1)  # optimiser step every N batches (larger batches)
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"  # how model.grad_clip is applied
    # keep the best epoch's checkpoint of the final fit (one per ensemble member) and log it to
    # the MLflow run under checkpoints/; walk-forward folds never keep one (runs stay small)
    checkpoint: bool = True

    def trainer_kwargs(self) -> dict:
        """The options as `lightning.Trainer` keyword arguments (`checkpoint` is ours, not Lightning's)."""
        return self.model_dump(exclude={"checkpoint"})
