"""Features per asset block in a local process pool equal the one-shot table bit for bit.

A module of its own because it starts worker processes (SLOW_MODULES in tests/conftest.py).
"""

from __future__ import annotations

import pytest

from adaptive_beta.models.features.blocks import read_feature_dataset, write_feature_dataset
from adaptive_beta.models.features.compute import compute_features
from tests.models.test_feature_blocks import SPEC, assert_same_table, panel, reference  # noqa: F401


@pytest.mark.parametrize("block_assets", [1, 3, 50])
def test_a_pool_of_two_gives_the_one_shot_table_in_memory(panel, reference, block_assets):  # noqa: F811
    table = compute_features(panel, SPEC, block_assets=block_assets, workers=2)
    assert_same_table(table.frame, reference.frame)


def test_a_pool_of_two_streams_the_one_shot_table(panel, reference, tmp_path):  # noqa: F811
    out = write_feature_dataset(panel, tmp_path / "feat", SPEC, block_assets=2, workers=2)
    assert len(list(out.glob("block-*.parquet"))) == 4
    assert_same_table(read_feature_dataset(out), reference.frame)


def test_workers_alone_use_memory_sized_blocks(panel, reference):  # noqa: F811
    assert_same_table(compute_features(panel, SPEC, workers=2).frame, reference.frame)


def test_the_cli_streams_through_a_pool_of_two(monkeypatch, panel, tmp_path):  # noqa: F811
    import pandas as pd

    from tests.models.test_features_cli_blocks import canonical, run_cli

    assert run_cli(monkeypatch, panel, tmp_path / "one.parquet") == 0
    assert (
        run_cli(monkeypatch, panel, tmp_path / "pool.parquet", "--block-assets", "2", "--workers", "2") == 0
    )
    ref = pd.read_parquet(tmp_path / "one.parquet")
    got = canonical(pd.read_parquet(tmp_path / "pool.parquet"))
    floats = [c for c in ref.columns if ref[c].dtype == "float64"]
    assert len(got) == len(ref) and got[floats].to_numpy().tobytes() == ref[floats].to_numpy().tobytes()
