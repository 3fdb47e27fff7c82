"""Duration fields of the training configs: one `Duration` type, errors that name the field."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.training.model_config import ModelConfig
from adaptive_beta.training.scorecard import EvalConfig
from adaptive_beta.training.splits import WalkForwardConfig
from adaptive_beta.training.train_config import TrainConfig, load_train_config


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        (ModelConfig, "lookback"),
        (ModelConfig, "decay_halflife"),
        (WalkForwardConfig, "horizon"),
        (WalkForwardConfig, "train_min"),
        (WalkForwardConfig, "train_max"),
        (WalkForwardConfig, "val"),
        (WalkForwardConfig, "test"),
        (WalkForwardConfig, "step"),
        (WalkForwardConfig, "embargo"),
        (TrainConfig, "horizon"),
        (TrainConfig, "regime_horizon"),
        (EvalConfig, "horizon"),
        (EvalConfig, "bootstrap_block"),
    ],
)
def test_a_bad_duration_is_an_error_naming_the_field(cls, field):
    with pytest.raises(ValidationError) as exc:
        cls(**{field: "soon"})
    err = exc.value.errors()[0]
    assert err["loc"] == (field,) and "invalid duration 'soon'" in err["msg"]


def test_optional_durations_take_none_and_val_takes_zero():
    assert ModelConfig(decay_halflife=None).decay_halflife is None
    wf = WalkForwardConfig(val="0d", step=None, embargo=None)
    assert wf.val == "0d" and wf.step is None and wf.embargo is None
    with pytest.raises(ValidationError, match="must be positive"):
        WalkForwardConfig(test="0d")  # only val may be empty


def test_a_config_file_error_names_the_nested_field(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text('horizon = "30d"\n[model]\nlookback = "soon"\n')
    with pytest.raises(DataError, match="'model.lookback'.*invalid duration 'soon'"):
        load_train_config(path)
    assert pd.Timedelta(TrainConfig().horizon) == pd.Timedelta("30D")
