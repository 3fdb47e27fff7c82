"""One asset's /forecast response entry (betas, interval, regime, drivers, summary).

Its own module because three callers build the same entry: the stateless endpoint, the stored-state
answers made once per bar (serving/stored_answers.py) and `abeta audit reproduce`
(serving/reproduce.py); none of them may import another's module without an import cycle."""

from __future__ import annotations

import numpy as np


def forecast_entry(
    symbol: str,
    as_of: str,
    outputs: tuple,
    shapley: tuple,
    benches: list[str],
    regimes: list[str],
    names: list[str],
) -> dict:
    """One asset's entry of the response: `outputs` (beta [K], lo [K], hi [K], regime_prob [R])
    and `shapley` (phi [G, K], base [K], full [K]); the stateless and stored paths share it, so
    both answer in exactly the same shape."""
    beta, lo, hi, regime_prob = outputs
    phi, base, full = shapley
    betas = {
        b: {"beta": float(beta[k]), "lo": float(lo[k]), "hi": float(hi[k])} for k, b in enumerate(benches)
    }
    drivers = {b: _drivers(names, phi[:, k], 3) for k, b in enumerate(benches)}
    summary = "; ".join(
        f"beta to {b} {betas[b]['beta']:.2f} (90% {betas[b]['lo']:.2f} to {betas[b]['hi']:.2f}), "
        f"{full[k] - base[k]:+.2f} vs the baseline {base[k]:.2f}: " + ", ".join(d["text"] for d in drivers[b])
        for k, b in enumerate(benches)
    )
    return {
        "symbol": symbol,
        "as_of": as_of,
        "betas": betas,
        "regime_probabilities": {r: float(regime_prob[j]) for j, r in enumerate(regimes)},
        "summary": summary,
        "drivers": drivers,
    }


def _drivers(names: list[str], phi: np.ndarray, top: int) -> list[dict]:
    order = np.argsort(-np.abs(phi))[:top]
    return [
        {
            "group": names[g],
            "contribution": float(phi[g]),
            "text": f"{names[g].replace('_', ' ')} {'raises' if phi[g] >= 0 else 'lowers'} it by {abs(phi[g]):.3f}",
        }
        for g in order
    ]
