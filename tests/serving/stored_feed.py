"""Feeding the stored state in-process: the body cut into a head (loaded first) and the bars
that follow, posted through the real `/bars` endpoint and read back through `/forecast`.
Shared by test_stored_forecasts.py and test_stored_records.py."""

from __future__ import annotations

import copy

from adaptive_beta.serving.bars_schemas import BarsRequest
from adaptive_beta.serving.endpoints.bars import bars
from adaptive_beta.serving.endpoints.forecast import forecast
from adaptive_beta.serving.schemas import ForecastRequest


def head(body: dict, drop: int) -> dict:
    """The body without its last `drop` bars of every asset and bar series (factors kept whole:
    their points are published after the bars they belong to)."""
    out = copy.deepcopy(body)
    for a in out["assets"]:
        a["history"] = a["history"][: len(a["history"]) - drop]
    out["series"]["CRYPTO_EW"] = out["series"]["CRYPTO_EW"][: len(out["series"]["CRYPTO_EW"]) - drop]
    return out


def tail(body: dict, n: int) -> dict:
    """The last `n` bars of every asset and of the bar series, as one /bars body."""
    out = copy.deepcopy(body)
    for a in out["assets"]:
        a["history"] = a["history"][-n:]
    out["series"] = {"CRYPTO_EW": out["series"]["CRYPTO_EW"][-n:]}
    return out


def post(state, body):
    return bars(state, BarsRequest.model_validate(body), "feed")


def stored(state, **form):
    return forecast(state, ForecastRequest.model_validate(form), "desk")
