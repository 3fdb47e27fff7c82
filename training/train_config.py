"""`TrainConfig`: one typed object for `abeta train`, with defaults that run on the simulator.

Load it from TOML, YAML or JSON (`load_train_config`); every section has the defaults of its own
module (FeatureSpec, ModelConfig, TrainerConfig, WalkForwardConfig, BaselineConfig), so a config file only
says what it changes.  Unknown keys are errors that name the key.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.durations import Duration
from adaptive_beta.models.features.spec import FeatureSpec
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.splits import WalkForwardConfig
from adaptive_beta.training.trainer_config import TrainerConfig

SimPreset = Literal["calibrated", "legacy"]  # = models.sim.config.PRESETS (a test checks)


class SimDefaults(BaseModel):
    """The built-in simulated market used when no --data is given."""

    model_config = ConfigDict(extra="forbid")
    seed: int = 7
    assets: int = 12
    days: int = 1460
    freq: str = "1d"
    preset: SimPreset = "calibrated"  # simulator dynamics (models/sim/config.py PRESETS)


class TrainConfig(BaseModel):
    """Everything `abeta train` does: data, targets, model, walk-forward, registry."""

    model_config = ConfigDict(extra="forbid")

    data: str | None = None  # folder or manifest; None = the built-in simulator (written to data/)
    sim: SimDefaults = SimDefaults()
    horizon: Duration = "30d"  # forward-beta horizon H
    regime_horizon: Duration = "7d"  # window of the forward-regime label
    features: FeatureSpec = FeatureSpec()
    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()  # Lightning options: accelerator, precision, checkpoint
    walk_forward: WalkForwardConfig = Field(default_factory=WalkForwardConfig)
    model_name: str = "adaptive-beta"  # registered model name in MLflow
    experiment: str = "adaptive-beta"  # MLflow experiment of training runs
    register_model: bool = True  # register the bundle (alias challenger)
    promote: bool = True  # then run the promotion gate (champion only if it wins)
    n_boot: int = Field(500, ge=50)  # block-bootstrap resamples for MSE-ratio intervals
    plot_assets: int = Field(3, ge=1)  # assets shown in the forecast-vs-realised plots
    attribution_windows: int = Field(256, ge=8)  # test windows used for captum global attributions
    progress: bool = True

    def model_post_init(self, __context) -> None:
        if self.walk_forward.horizon != self.horizon:
            object.__setattr__(
                self, "walk_forward", self.walk_forward.model_copy(update={"horizon": self.horizon})
            )


def load_train_config(path: str | Path | None = None, **overrides) -> TrainConfig:
    """Read a TOML/YAML/JSON config (or none) and apply CLI overrides; errors name file and field."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise DataError("config file not found", file=str(p))
        text = p.read_text()
        try:
            if p.suffix == ".toml":
                raw = tomllib.loads(text)
            elif p.suffix in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raw = json.loads(text)
        except Exception as exc:
            raise DataError(f"cannot parse config: {exc}", file=str(p)) from exc
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err["loc"])
        raise DataError(
            f"invalid config field {field!r}: {err['msg']}", file=str(path) if path else None
        ) from exc


def with_cli_overrides(
    cfg: TrainConfig, arch: str | None = None, max_folds: int | None = None, quiet: bool = False
) -> TrainConfig:
    """The command-line overrides of `abeta train` / `abeta tune`, validated like the file itself."""
    raw = cfg.model_dump(mode="json")
    if arch:
        raw["model"]["arch"] = arch
    if max_folds:
        raw["walk_forward"]["max_folds"] = max_folds
    if quiet:
        raw["progress"] = False
    return TrainConfig.model_validate(raw)
