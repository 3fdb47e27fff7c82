"""Exact Shapley values over feature groups, from forward passes only (torch-free, pure numpy).

Why exact and grouped: a per-request explanation must be fast and must add up.  With G feature
groups (crypto benchmark, equities, commodities, FX/rates, volatility, funding/leverage, the
asset's own history: G <= ~10) all 2^G coalitions fit in ONE batched model call (128 rows for
G = 7), and the classic formula

    phi_g = sum_{S subset of N \\ {g}} |S|! (G - |S| - 1)! / G! * (v(S + g) - v(S))

gives values that satisfy efficiency exactly: sum_g phi_g = f(x) - f(baseline).

The game.  v(S) = f(z_S) where z_S takes the features of the groups in S from the explained
input x and every other feature from the baseline input.  A group is a set of feature columns
(last axis); a sequence input [L, F] swaps whole columns (all time steps) at once.

The baseline (documented choice, used by the service): every feature at its training mean,
constant over the lookback window (`normalization.json` of the bundle), i.e. "an average
asset on an average day of the training period".  `baseline_from_means` builds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from math import factorial

import numpy as np

MAX_GROUPS = 16  # 2^16 coalitions is the most one batched call should ever carry


def coalition_masks(n_groups: int) -> np.ndarray:
    """Boolean [2^G, G]: row k is the coalition whose bit g of k is set (row 0 = empty, last = all)."""
    if not 1 <= n_groups <= MAX_GROUPS:
        raise ValueError(f"n_groups must be in 1..{MAX_GROUPS}, got {n_groups}")
    k = np.arange(2**n_groups)[:, None]
    return ((k >> np.arange(n_groups)[None, :]) & 1).astype(bool)


def shapley_weights(n_groups: int) -> np.ndarray:
    """w[s] = s! (G - s - 1)! / G! for coalition sizes s = 0 .. G-1 (they sum, over subsets, to 1)."""
    g = n_groups
    return np.array([factorial(s) * factorial(g - s - 1) / factorial(g) for s in range(g)])


def _group_index(groups: Sequence[Sequence[int]], n_features: int) -> list[np.ndarray]:
    out = []
    seen = np.zeros(n_features, dtype=bool)
    for i, cols in enumerate(groups):
        idx = np.asarray(list(cols), dtype=int)
        if idx.size == 0:
            raise ValueError(f"group {i} is empty: every group needs at least one feature column")
        if idx.min() < 0 or idx.max() >= n_features:
            raise ValueError(f"group {i} has a column outside 0..{n_features - 1}: {idx.tolist()}")
        if seen[idx].any():
            raise ValueError(f"group {i} overlaps an earlier group at columns {idx[seen[idx]].tolist()}")
        seen[idx] = True
        out.append(idx)
    return out


def coalition_inputs(
    x: np.ndarray, baseline: np.ndarray, groups: Sequence[Sequence[int]], masks: np.ndarray | None = None
) -> np.ndarray:
    """Stack of inputs [2^G, *x.shape]: coalition k takes the columns of its groups from x, the rest from baseline.

    Columns in no group are taken from x in every coalition (they are not players).
    """
    x = np.asarray(x)
    base = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    sel = _take_x(groups, masks, x.shape[-1], x.ndim)
    return np.where(sel, x[None], base[None])


def _take_x(
    groups: Sequence[Sequence[int]], masks: np.ndarray | None, n_features: int, ndim: int
) -> np.ndarray:
    """Per-coalition column selector [2^G, 1.., F] (True: the column comes from the window), shaped
    to broadcast over a window of `ndim` dimensions."""
    idx = _group_index(groups, n_features)
    if masks is None:
        masks = coalition_masks(len(idx))
    take_x = np.ones((masks.shape[0], n_features), dtype=bool)
    for g, cols in enumerate(idx):
        take_x[:, cols] = masks[:, [g]]
    return take_x.reshape((masks.shape[0],) + (1,) * (ndim - 1) + (n_features,))


def coalition_batch(
    x: np.ndarray, baseline: np.ndarray, groups: Sequence[Sequence[int]], masks: np.ndarray | None = None
) -> np.ndarray:
    """float32 [N * 2^G, *x.shape[1:]]: `coalition_inputs` of every window of x [N, ...], stacked in
    window order, the same values cast to float32.  Written into one array (one pass per source)
    instead of N per-window stacks concatenated: for 200 windows it is ~5x faster and half the
    peak memory (a stored-state bar forecasts and explains the whole universe at once)."""
    x = np.asarray(x)
    base = np.asarray(baseline, dtype=x.dtype).astype(np.float32)  # as coalition_inputs, then the cast
    sel = _take_x(groups, masks, x.shape[-1], x.ndim - 1)
    out = np.empty((x.shape[0], sel.shape[0], *x.shape[1:]), dtype=np.float32)
    out[...] = base
    np.copyto(out, x.astype(np.float32, copy=False)[:, None], where=sel[None])
    return out.reshape((-1, *x.shape[1:]))


def shapley_from_values(values: np.ndarray, n_groups: int) -> np.ndarray:
    """phi [G, ...] from the game's values [2^G, ...] laid out as in `coalition_masks`."""
    v = np.asarray(values, dtype=np.float64)
    if v.shape[0] != 2**n_groups:
        raise ValueError(f"expected {2**n_groups} coalition values for {n_groups} groups, got {v.shape[0]}")
    masks = coalition_masks(n_groups)
    sizes = masks.sum(axis=1)
    w = shapley_weights(n_groups)
    phi = np.zeros((n_groups,) + v.shape[1:], dtype=np.float64)
    rows = np.arange(2**n_groups)
    for g in range(n_groups):
        without = rows[~masks[:, g]]
        with_g = without | (1 << g)
        wg = w[sizes[without]].reshape((-1,) + (1,) * (v.ndim - 1))
        phi[g] = (wg * (v[with_g] - v[without])).sum(axis=0)
    return phi


@dataclass(frozen=True)
class ShapleyResult:
    phi: np.ndarray  # [G, *output shape] contribution of each group
    base_value: np.ndarray  # f(baseline)
    full_value: np.ndarray  # f(x); full_value - base_value == phi.sum(0) up to float error


def exact_group_shapley(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    groups: Sequence[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact group Shapley values of f at x against baseline, with ONE call of f on 2^G stacked inputs.

    f maps a batch [B, *x.shape] to outputs [B, ...].  Returns (phi [G, ...], f(baseline), f(x)).
    """
    masks = coalition_masks(len(groups))
    batch = coalition_inputs(x, baseline, groups, masks)
    values = np.asarray(f(batch), dtype=np.float64)
    phi = shapley_from_values(values, len(groups))
    return phi, values[0], values[-1]


def baseline_from_means(means: Sequence[float] | np.ndarray, lookback: int | None = None) -> np.ndarray:
    """Baseline input: each feature at its training mean, repeated over `lookback` steps ([F] or [L, F])."""
    m = np.asarray(means, dtype=np.float32)
    if lookback is None:
        return m
    return np.repeat(m[None, :], lookback, axis=0)


@dataclass(frozen=True)
class FeatureDetail:
    group: str
    feature: str
    contribution: np.ndarray  # per output
    method: str  # "shapley_within_group" | "leave_one_out"


def top_features_within_groups(
    f: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    baseline: np.ndarray,
    groups: Mapping[str, Sequence[int]],
    feature_names: Sequence[str],
    group_phi: np.ndarray,
    top_groups: int = 2,
    max_exact_features: int = 8,
    output_index: int | tuple | None = None,
) -> dict[str, list[FeatureDetail]]:
    """Per-feature detail inside the `top_groups` groups with the largest |phi| (one call of f per group).

    Definition (documented, not the only possible one): inside group g, every OTHER group is held at
    its explained value x, and the features of g play a game between x and the baseline.

    - If g has <= `max_exact_features` columns: exact Shapley values of that within-group game.  They
      add up to f(x) - f(x with group g at baseline), the group's leave-out effect, which equals the
      group's Shapley value phi_g when g does not interact with other groups (additive models) and
      differs from it by the interaction terms otherwise.
    - Larger groups: leave-one-out, f(x) - f(x with feature i at baseline), all else at x (does not
      add up in general; labelled "leave_one_out").

    `group_phi` is [G, ...]; the ranking uses |phi| at `output_index` (default: summed over outputs).
    Feature lists are sorted by |contribution| (same reduction), largest first.
    """
    names = list(groups)
    phi = np.asarray(group_phi, dtype=np.float64)

    def score(a: np.ndarray) -> float:
        a = np.asarray(a)
        if output_index is not None and a.ndim > 0:
            return float(abs(a[output_index]))
        return float(np.abs(a).sum())

    order = sorted(range(len(names)), key=lambda g: -score(phi[g]))[:top_groups]
    x = np.asarray(x)
    base = np.broadcast_to(np.asarray(baseline, dtype=x.dtype), x.shape)
    out: dict[str, list[FeatureDetail]] = {}
    for g in order:
        name = names[g]
        cols = list(groups[name])
        if len(cols) <= max_exact_features:
            # within-group game: players are single columns of g; other groups fixed at x
            local_base = np.array(x, copy=True)
            local_base[..., cols] = base[..., cols]
            p, _, _ = exact_group_shapley(f, x, local_base, [[c] for c in cols])
            method = "shapley_within_group"
        else:
            batch = np.repeat(x[None], len(cols) + 1, axis=0)
            for i, c in enumerate(cols):
                batch[i + 1, ..., c] = base[..., c]
            vals = np.asarray(f(batch), dtype=np.float64)
            p = vals[0][None] - vals[1:]
            method = "leave_one_out"
        details = [FeatureDetail(name, feature_names[c], p[i], method) for i, c in enumerate(cols)]
        details.sort(key=lambda d: -score(d.contribution))
        out[name] = details
    return out


# Coalition rows per model call.  Small on purpose: ONNX Runtime's CPU arena keeps the buffers of
# the largest call it has seen for the life of the session (2048 rows of 32 x 119 float32 left
# ~200 MiB in the worker after one stored-state bar), and a call of a few hundred rows stays in
# cache (measured: 256 rows as fast as 2048 or faster on this model; docs/serving.md)
MAX_ROWS_PER_CALL = 256


def bundle_groups(meta) -> dict[str, list[int]]:
    """Feature group -> column indices of a bundle (`meta.feature_groups`, in column order):
    the players of the service's explanations."""
    groups: dict[str, list[int]] = {}
    for i, col in enumerate(meta.feature_columns):
        groups.setdefault(meta.feature_groups[col], []).append(i)
    return groups


def training_means(bundle) -> np.ndarray:
    """Each feature's training mean in bundle column order (`normalization.json`): the baseline."""
    norm = bundle.normalization
    mean = dict(zip(norm.get("columns", bundle.feature_columns), norm["mean"], strict=True))
    return np.array([mean[c] for c in bundle.feature_columns], dtype=np.float32)


def batched_beta_shapley(
    predict: Callable[[np.ndarray], Mapping[str, np.ndarray]],
    x: np.ndarray,
    means: np.ndarray,
    groups: Sequence[Sequence[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group Shapley of every window's beta: (phi [N, G, K], base [K], full [N, K]).

    The N x 2^G coalition inputs of windows x [N, L, F] go through `predict` (the ONNX model) in
    calls of about MAX_ROWS_PER_CALL rows, each call's coalitions built just before it (the whole
    stack would be 2^G times the windows: ~370 MB for 200 windows of the 8h model); the baseline
    is every feature at its training mean (`means`).  The service and `adaptive_beta.load_model(...).explain` share it.
    """
    n_groups = len(groups)
    masks = coalition_masks(n_groups)
    base = baseline_from_means(means, lookback=x.shape[1])
    per = max(1, MAX_ROWS_PER_CALL // 2**n_groups)  # windows per call, their coalitions built per call
    out = [
        predict(coalition_batch(x[s : s + per], base, groups, masks))["beta"] for s in range(0, len(x), per)
    ]
    return shapley_of_windows(np.concatenate(out, axis=0).reshape(x.shape[0], 2**n_groups, -1))


def shapley_of_windows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(phi [N, G, K], base [K], full [N, K]) from every window's coalition values [N, 2^G, K]
    (`coalition_masks` order), all windows in one vectorised pass."""
    v = np.asarray(values, dtype=np.float64)
    n_groups = int(round(np.log2(v.shape[1])))
    phi = shapley_from_values(v.transpose(1, 0, 2), n_groups).transpose(1, 0, 2)
    return phi, v[0, 0], v[:, -1]
