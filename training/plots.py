"""Figures people would rather look at than read: forecast vs realised beta, interval
calibration, regime confusion, feature-group attributions.  Each returns a matplotlib Figure
(no display needed) that the caller logs to MLflow or saves.
"""

from __future__ import annotations

import matplotlib.pyplot as plt  # headless machines fall back to Agg; notebooks keep their inline backend
import numpy as np
import pandas as pd
from scipy.stats import norm


def forecast_vs_realised(
    preds: pd.DataFrame,
    realised: pd.DataFrame,
    baseline: pd.DataFrame | None,
    benchmark: str,
    symbols: list[str],
    truth: pd.DataFrame | None = None,
    baseline_name: str = "best baseline",
):
    """Model beta with its 90 % band, the realised forward beta (and truth, if simulated) per asset."""
    fig, axes = plt.subplots(len(symbols), 1, figsize=(10, 2.6 * len(symbols)), sharex=True, squeeze=False)
    for ax, sym in zip(axes[:, 0], symbols, strict=True):
        p = preds.xs(sym, level="symbol")
        ax.fill_between(
            p.index, p[f"{benchmark}_lo"], p[f"{benchmark}_hi"], alpha=0.2, label="model 90 % interval"
        )
        ax.plot(p.index, p[benchmark], lw=1.2, label="model")
        r = realised[benchmark].xs(sym, level="symbol").reindex(p.index)
        ax.plot(r.index, r, lw=1.0, color="k", alpha=0.7, label="realised forward beta")
        if baseline is not None and sym in baseline.columns:
            ax.plot(p.index, baseline[sym].reindex(p.index), lw=1.0, ls="--", label=baseline_name)
        if truth is not None:
            t = truth[benchmark].xs(sym, level="symbol").reindex(p.index)
            ax.plot(t.index, t, lw=1.0, color="tab:red", alpha=0.7, label="true forward beta")
        ax.set_ylabel(f"{sym}\nbeta to {benchmark}")
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=3)
    fig.suptitle(f"Forward beta to {benchmark}: forecast vs realised (walk-forward test periods)")
    fig.tight_layout()
    return fig


def interval_calibration(
    preds: pd.DataFrame, realised: pd.DataFrame, benchmarks: list[str], z90: float = 1.6449
):
    """Empirical vs nominal coverage of central Gaussian intervals implied by the 90 % band."""
    levels = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0.4, 1], [0.4, 1], color="grey", lw=1, ls=":")
    for b in benchmarks:
        y = realised[b].reindex(preds.index).to_numpy()
        mu = preds[b].to_numpy()
        sigma = (preds[f"{b}_hi"] - preds[f"{b}_lo"]).to_numpy() / (2 * z90)
        ok = np.isfinite(y) & np.isfinite(mu) & (sigma > 0)
        cov = [np.mean(np.abs(y[ok] - mu[ok]) <= norm.ppf(0.5 + lv / 2) * sigma[ok]) for lv in levels]
        ax.plot(levels, cov, marker="o", label=b)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage (test folds)")
    ax.set_title("Interval calibration")
    ax.legend()
    fig.tight_layout()
    return fig


def regime_confusion(labels: np.ndarray, predicted: np.ndarray, names: tuple[str, ...]):
    """Row-normalised confusion matrix of the forward-regime head."""
    r = len(names)
    cm = np.zeros((r, r))
    for a, b in zip(labels, predicted, strict=True):
        if a >= 0:
            cm[a, b] += 1
    norm_cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(norm_cm, cmap="Blues", vmin=0, vmax=1)
    for i in range(r):
        for j in range(r):
            ax.text(j, i, f"{norm_cm[i, j]:.2f}\n({int(cm[i, j])})", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(r), names)
    ax.set_yticks(range(r), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("realised forward regime")
    ax.set_title("Regime confusion (test folds)")
    fig.tight_layout()
    return fig


def group_attributions(attr: dict[str, dict[str, float]]):
    """Bar chart: mean |integrated gradient| per feature group, per benchmark."""
    benches = list(attr)
    groups = sorted({g for a in attr.values() for g in a})
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(groups) + 1.5))
    h = 0.8 / max(len(benches), 1)
    for i, b in enumerate(benches):
        vals = [attr[b].get(g, 0.0) for g in groups]
        ax.barh(np.arange(len(groups)) + i * h, vals, height=h, label=b)
    ax.set_yticks(np.arange(len(groups)) + h * (len(benches) - 1) / 2, groups)
    ax.set_xlabel("share of mean |attribution| (integrated gradients)")
    ax.set_title("Global feature-group attributions of the beta correction")
    ax.legend()
    fig.tight_layout()
    return fig
