"""Column labels of the frames serving builds per request, without rebuilding them per request.

A pandas string Index costs ~50 us to build (its values are a pyarrow array) and a request
brings the same few names every time: the model's factors and benchmarks, its feature columns,
the assets.  `labels` builds each distinct list of names once.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from functools import lru_cache

import pandas as pd


@lru_cache(maxsize=256)
def _cached(names: tuple[Hashable, ...]) -> pd.Index:
    return pd.Index(list(names))


def labels(names: Iterable[Hashable]) -> pd.Index:
    """`pd.Index(list(names))`, built once per distinct tuple of names.

    A view of the cached Index (same values and dtype, ~1.5 us), so naming one frame's columns
    (`frame.columns.name = ...`) names no other frame's.
    """
    return _cached(tuple(names)).view()
