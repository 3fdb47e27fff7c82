"""GET /model: the served model's card (version, benchmarks, regimes, required history), which a
client reads to build valid requests."""

from __future__ import annotations

from adaptive_beta.serving.app_state import AppState


def model(state: AppState, req: None = None, caller: str | None = None) -> dict:
    """The model card; public to every authenticated role, never audited (it holds no forecast)."""
    return state.model_card()
