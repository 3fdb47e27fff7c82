"""TrainConfig files: the shipped example loads; mistakes are errors that name the field."""

from pathlib import Path

import pytest

from adaptive_beta.models.data.schema import DataError
from adaptive_beta.training.train_config import load_train_config

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_example_config_loads_with_its_overrides():
    cfg = load_train_config(ROOT / "docs" / "train-config.example.toml")
    assert cfg.model.arch == "gru" and cfg.walk_forward.test == "180d" and cfg.horizon == "30d"
    assert cfg.walk_forward.horizon == cfg.horizon  # one source of truth for the horizon


def test_unknown_key_and_bad_duration_name_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nhiden = 8\n")
    with pytest.raises(DataError, match="model.hiden"):
        load_train_config(bad)
    bad.write_text('horizon = "30 days"\n')
    with pytest.raises(DataError, match="horizon"):
        load_train_config(bad)
    with pytest.raises(DataError, match="not found"):
        load_train_config(tmp_path / "missing.toml")
