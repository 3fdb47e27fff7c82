"""Baselines with blocks of assets in a local process pool equal the in-process run bit for bit.

A module of its own because it starts worker processes (SLOW_MODULES in tests/conftest.py).
"""

from __future__ import annotations

import pandas as pd

from adaptive_beta.models.estimators.baselines import baseline_forecasts
from tests.models.test_baseline_blocks import _assert_identical, _market


def test_a_process_pool_gives_the_in_process_numbers():
    returns, bench, factors = _market()
    ref = baseline_forecasts(returns, bench, factors, pd.Timedelta("8h"))
    got = baseline_forecasts(returns, bench, factors, pd.Timedelta("8h"), block_assets=3, workers=2)
    _assert_identical(got, ref)
