"""The one finiteness rule for responses: a number JSON cannot carry never reaches a client or the log.

Its own module so that the stored-state answers (serving/stored_answers.py), which check each kept
entry once when it is made, share it with `AppState.log_unique` without importing app_state."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from adaptive_beta.serving.schemas import RequestError


def require_finite(value: Any, where: str = "") -> None:
    """Raise RequestError (422) naming the first non-finite float in a response, e.g. `orders[1].notional`.

    Every endpoint's response passes here (`log_unique`) before it is logged, so a number JSON
    cannot carry (the response would say null, the record Infinity) never reaches either.
    """
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            raise RequestError(
                f"the result {where or 'value'} is not a finite number ({value}): the request's numbers "
                "are too large or degenerate for this calculation",
                where or "body",
            )
    elif isinstance(value, dict):
        for k, v in value.items():
            require_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            require_finite(v, f"{where}[{i}]")
