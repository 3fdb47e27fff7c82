"""Global feature attributions: captum integrated gradients, aggregated by feature group.

Offline only (about 0.1 s per batch on CPU): serving explains single forecasts with exact group
Shapley values on the ONNX graph instead.  The baseline input is the training mean of every
feature (zero after the net's internal normalisation), the same baseline serving uses.
"""

from __future__ import annotations

import numpy as np


def integrated_gradients_by_group(
    net,
    x: np.ndarray,
    mean: np.ndarray,
    columns: list[str],
    groups: dict[str, str],
    benchmarks: list[str],
    n_steps: int = 32,
) -> dict[str, dict[str, float]]:
    """Share of mean |IG attribution| per feature group, for each benchmark's beta output.

    x: windows [B, L, F] of raw features.  Attributions are summed over time steps per feature,
    absolute values averaged over windows, then summed within groups and normalised to 1.
    """
    import torch
    from captum.attr import IntegratedGradients

    net.eval()
    xt = torch.as_tensor(x, dtype=torch.float32)
    # NaN inputs are mapped to the mean by the net; do the same here so gradients are defined
    base_row = torch.as_tensor(mean, dtype=torch.float32)
    xt = torch.where(torch.isnan(xt), base_row.expand_as(xt), xt)
    baseline = base_row.expand_as(xt).clone()
    out: dict[str, dict[str, float]] = {}
    for k, bench in enumerate(benchmarks):
        ig = IntegratedGradients(lambda inp, k=k: net(inp)[0][:, k])
        attr = ig.attribute(xt, baselines=baseline, n_steps=n_steps, internal_batch_size=256)
        per_feature = attr.abs().sum(dim=1).mean(dim=0).detach().numpy()  # [F]
        agg: dict[str, float] = {}
        for col, val in zip(columns, per_feature, strict=True):
            g = groups.get(col, "other")
            agg[g] = agg.get(g, 0.0) + float(val)
        total = sum(agg.values()) or 1.0
        out[bench] = {g: v / total for g, v in sorted(agg.items(), key=lambda kv: -kv[1])}
    return out
