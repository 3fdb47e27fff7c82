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
    assert cfg.trainer.accelerator == "auto" and cfg.trainer.checkpoint is True


def test_trainer_table_is_typed_and_an_unknown_trainer_key_is_named(tmp_path):
    good = tmp_path / "trainer.toml"
    good.write_text('[trainer]\naccelerator = "cpu"\naccumulate_grad_batches = 4\ncheckpoint = false\n')
    cfg = load_train_config(good)
    assert cfg.trainer.trainer_kwargs() == {
        "accelerator": "cpu",
        "devices": 1,
        "precision": "32-true",
        "deterministic": True,
        "accumulate_grad_batches": 4,
        "gradient_clip_algorithm": "norm",
    }
    assert cfg.trainer.checkpoint is False
    for text, field in (
        ('[trainer]\nacelerator = "gpu"\n', "trainer.acelerator"),
        ('[trainer]\naccelerator = "tpu-pod"\n', "trainer.accelerator"),
        ("[trainer]\naccumulate_grad_batches = 0\n", "trainer.accumulate_grad_batches"),
        ('[trainer]\nprecision = "64-true"\n', "trainer.precision"),
    ):
        good.write_text(text)
        with pytest.raises(DataError, match=field.replace(".", r"\.")):
            load_train_config(good)


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


def test_sim_preset_is_checked_and_names_the_cached_folder(tmp_path):
    from typing import get_args

    from adaptive_beta.models.sim.config import PRESETS
    from adaptive_beta.training.pipeline import default_sim_dir
    from adaptive_beta.training.train_config import SimPreset, TrainConfig

    assert get_args(SimPreset) == PRESETS and TrainConfig().sim.preset == "calibrated"
    assert str(default_sim_dir(TrainConfig())) == str(Path("data") / "sim-calibrated-seed7-12a-1460d-1d")
    cfg_file = tmp_path / "legacy.toml"
    cfg_file.write_text('[sim]\npreset = "legacy"\nseed = 3\n')
    cfg = load_train_config(cfg_file)
    assert str(default_sim_dir(cfg)) == str(Path("data") / "sim-legacy-seed3-12a-1460d-1d")
    cfg_file.write_text('[sim]\npreset = "old"\n')
    with pytest.raises(DataError, match="sim.preset"):
        load_train_config(cfg_file)
