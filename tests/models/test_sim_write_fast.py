"""The simulator's fast CSV writer produces the bytes pandas' `to_csv(float_format=...)` did."""

from __future__ import annotations

import numpy as np
import pandas as pd

from adaptive_beta.models.sim.config import SimConfig
from adaptive_beta.models.sim.simulator import simulate
from adaptive_beta.models.sim.write import FLOAT_FORMAT, _csv_text, write_simulation


def pandas_csv(frame: pd.DataFrame) -> str:
    df = frame.copy()
    df.index = df.index.strftime("%Y-%m-%dT%H:%M:%SZ")
    df.index.name = "timestamp"
    return df.to_csv(float_format=FLOAT_FORMAT, lineterminator="\n")


def test_awkward_floats_are_written_as_pandas_wrote_them():
    idx = pd.date_range("2021-01-01", periods=8, freq="h", tz="UTC", name="timestamp")
    values = [1.0, np.nan, np.inf, -np.inf, -0.0, 1e-300, 123456789.123456789, 0.1 + 0.2]
    frame = pd.DataFrame({"close": values, "volume": values[::-1]}, index=idx)
    labels = pd.Index(idx.strftime("%Y-%m-%dT%H:%M:%SZ"), name="timestamp")
    text = _csv_text(frame, labels)
    assert text == pandas_csv(frame)
    assert text.splitlines()[2] == "2021-01-01T01:00:00Z,,123456789.123"  # NaN is an empty field
    assert text.splitlines()[8] == "2021-01-01T07:00:00Z,0.3,1"


def test_every_simulated_asset_file_has_the_pandas_bytes(tmp_path):
    result = simulate(SimConfig(n_assets=4, days=20, freq="1h", seed=3))
    out = write_simulation(result, tmp_path / "sim")
    for sym, frame in result.assets.items():
        assert (out / "assets" / f"{sym}.csv").read_text() == pandas_csv(frame)
    assert len(result.assets) == 4 and len(frame) == 480
