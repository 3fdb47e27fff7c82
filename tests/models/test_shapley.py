"""Exact group Shapley values: the axioms hold to float precision, and hand-computed games match."""

from __future__ import annotations

from itertools import permutations
from math import comb

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from adaptive_beta.models.bundle.shapley import (
    coalition_batch,
    coalition_inputs,
    coalition_masks,
    exact_group_shapley,
    shapley_from_values,
    shapley_weights,
    top_features_within_groups,
)


def _brute_force(f, x, baseline, groups):
    """Shapley by averaging marginal contributions over all orderings (independent reference)."""
    g = len(groups)
    phi = np.zeros(g)

    def value(members):
        z = np.broadcast_to(np.asarray(baseline, dtype=float), x.shape).copy()
        for m in members:
            z[..., groups[m]] = x[..., groups[m]]
        return float(f(z[None])[0])

    perms = list(permutations(range(g)))
    for p in perms:
        present: list[int] = []
        for m in p:
            before = value(present)
            present.append(m)
            phi[m] += value(present) - before
    return phi / len(perms)


def test_weights_sum_to_one_over_subsets_of_the_others():
    for g in range(1, 9):
        w = shapley_weights(g)
        counts = [comb(g - 1, s) for s in range(g)]
        assert np.isclose(sum(c * wi for c, wi in zip(counts, w, strict=True)), 1.0)


def test_coalition_masks_layout_first_empty_last_full():
    m = coalition_masks(3)
    assert m.shape == (8, 3)
    assert not m[0].any() and m[-1].all()
    assert m[5].tolist() == [True, False, True]


def test_coalition_inputs_swap_whole_columns_over_time():
    x = np.arange(12, dtype=float).reshape(3, 4)  # L=3, F=4
    base = np.full(4, -1.0)
    z = coalition_inputs(x, base, [[0, 1], [3]])  # column 2 is in no group -> always from x
    assert z.shape == (4, 3, 4)
    assert np.all(z[0][:, [0, 1, 3]] == -1) and np.all(z[0][:, 2] == x[:, 2])
    assert np.all(z[1][:, :2] == x[:, :2]) and np.all(z[1][:, 3] == -1)
    assert np.array_equal(z[3], x)


@settings(max_examples=25, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 4),
    st.sampled_from([np.float32, np.float64]),
)
def test_coalition_batch_is_every_windows_coalition_inputs_as_float32(seed, n_windows, dtype):
    """The batched builder the stored-state path uses is bit-equal to stacking `coalition_inputs`
    per window and casting (NaN in place too), column 5 in no group."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_windows, 3, 6)).astype(dtype)
    x[0, 1, 2] = np.nan
    base = rng.normal(size=(3, 6))
    groups = [[0, 1], [2], [3, 4]]
    masks = coalition_masks(3)
    want = np.concatenate([coalition_inputs(xi, base, groups, masks) for xi in x]).astype(np.float32)
    got = coalition_batch(x, base, groups, masks)
    assert got.dtype == np.float32 and got.shape == (n_windows * 8, 3, 6)
    assert np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(got[7], x[0].astype(np.float32), equal_nan=True)  # full coalition: the window


def test_linear_model_contributions_are_weight_times_deviation():
    w = np.array([0.5, -2.0, 3.0, 1.0])
    f = lambda b: b @ w  # noqa: E731
    x = np.array([1.0, 2.0, 3.0, 4.0])
    base = np.array([0.0, 1.0, 1.0, 1.0])
    phi, b0, fx = exact_group_shapley(f, x, base, [[0], [1, 2], [3]])
    assert np.allclose(phi, [0.5 * 1, -2.0 * 1 + 3.0 * 2, 1.0 * 3])
    assert np.isclose(b0, base @ w) and np.isclose(fx, x @ w)


def test_interaction_is_split_equally_between_the_two_players():
    # f = x0 * x1 from baseline 0: v({0})=v({1})=0, v({0,1})=6 -> 3 each
    f = lambda b: b[:, 0] * b[:, 1]  # noqa: E731
    phi, _, _ = exact_group_shapley(f, np.array([2.0, 3.0]), np.zeros(2), [[0], [1]])
    assert np.allclose(phi, [3.0, 3.0])


def test_f_is_called_once_on_all_coalitions():
    calls = []

    def f(b):
        calls.append(b.shape)
        return b.sum(axis=(1, 2))

    exact_group_shapley(f, np.ones((5, 6)), np.zeros(6), [[0], [1], [2, 3], [4, 5]])
    assert calls == [(16, 5, 6)]


def test_vector_outputs_get_one_value_per_output():
    f = lambda b: np.stack([b.sum(1), 2 * b[:, 0], np.tanh(b[:, 1])], axis=1)  # noqa: E731
    x, base = np.array([1.0, 2.0, -1.0]), np.zeros(3)
    phi, b0, fx = exact_group_shapley(f, x, base, [[0], [1], [2]])
    assert phi.shape == (3, 3)
    assert np.allclose(phi.sum(0), fx - b0, atol=1e-12)
    assert np.allclose(phi[:, 1], [2.0, 0.0, 0.0])


def _nonlinear(b):
    # depends on interactions across groups and time
    s = b.sum(axis=-2) if b.ndim == 3 else b
    return np.tanh(s[:, 0] * s[:, 1]) + np.sin(s[:, 2]) * s[:, 3] + 0.3 * s[:, 4] ** 2 - np.exp(0.1 * s[:, 5])


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_groups=st.integers(1, 6),
    nonlinear=st.booleans(),
)
def test_efficiency_sum_of_contributions_equals_fx_minus_baseline(seed, n_groups, nonlinear):
    rng = np.random.default_rng(seed)
    n_features = 6
    x = rng.normal(size=(4, n_features))
    base = rng.normal(size=n_features)
    cols = rng.permutation(n_features)
    cuts = np.sort(rng.choice(np.arange(1, n_features), size=n_groups - 1, replace=False))
    groups = [c.tolist() for c in np.split(cols, cuts)]
    w = rng.normal(size=n_features)
    f = _nonlinear if nonlinear else (lambda b: b.sum(axis=1) @ w)
    phi, b0, fx = exact_group_shapley(f, x, base, groups)
    assert abs(phi.sum() - (fx - b0)) < 1e-4
    # and equals the permutation definition (independent reference)
    assert np.allclose(phi, _brute_force(f, x, base, groups), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_symmetric_players_get_equal_values_and_dummies_get_zero(seed):
    rng = np.random.default_rng(seed)
    a, c = rng.normal(), rng.normal()
    # f symmetric in features 0 and 1, ignores feature 3 (dummy)
    f = lambda b: np.tanh(b[:, 0] + b[:, 1]) * b[:, 2] + a * b[:, 0] * b[:, 1] + c  # noqa: E731
    v = rng.normal()
    x = np.array([v, v, rng.normal(), rng.normal()])
    base = np.array([0.0, 0.0, rng.normal(), rng.normal()])
    phi, _, _ = exact_group_shapley(f, x, base, [[0], [1], [2], [3]])
    assert abs(phi[0] - phi[1]) < 1e-12
    assert abs(phi[3]) < 1e-12


def test_shapley_from_values_rejects_wrong_number_of_values():
    try:
        shapley_from_values(np.zeros(7), 3)
    except ValueError as exc:
        assert "expected 8" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("no error")


def test_overlapping_groups_are_rejected_naming_the_group():
    try:
        coalition_inputs(np.zeros(3), np.zeros(3), [[0, 1], [1, 2]])
    except ValueError as exc:
        assert "group 1 overlaps" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("no error")


def test_within_group_detail_adds_up_to_group_effect_for_additive_model():
    w = np.array([1.0, -2.0, 0.5, 4.0, 0.1])
    f = lambda b: (b @ w)[:, None] * np.array([1.0, 2.0])  # noqa: E731  two outputs
    x = np.array([1.0, 1.0, 2.0, 1.0, 5.0])
    base = np.zeros(5)
    groups = {"a": [0, 1, 2], "b": [3], "c": [4]}
    phi, _, _ = exact_group_shapley(f, x, base, list(groups.values()))
    detail = top_features_within_groups(f, x, base, groups, ["f0", "f1", "f2", "f3", "f4"], phi, top_groups=2)
    # |phi| summed over outputs: a = (1 - 2 + 1) * 3 = 0, b = 4 * 3 = 12, c = 0.5 * 3 = 1.5
    assert list(detail) == ["b", "c"]
    detail = top_features_within_groups(
        f, x, base, {"a": groups["a"]}, ["f0", "f1", "f2"], phi[:1], top_groups=1
    )
    a = {d.feature: d.contribution for d in detail["a"]}
    assert (
        np.allclose(a["f0"], [1.0, 2.0])
        and np.allclose(a["f1"], [-2.0, -4.0])
        and np.allclose(a["f2"], [1.0, 2.0])
    )
    assert np.allclose(sum(a.values()), phi[0])
    assert detail["a"][0].method == "shapley_within_group"


def test_large_groups_fall_back_to_leave_one_out():
    f = lambda b: b[:, 0] * b[:, 1] + b[:, 2]  # noqa: E731
    x, base = np.array([2.0, 3.0, 1.0]), np.zeros(3)
    phi, _, _ = exact_group_shapley(f, x, base, [[0, 1, 2]])
    d = top_features_within_groups(f, x, base, {"g": [0, 1, 2]}, ["a", "b", "c"], phi, max_exact_features=2)
    got = {e.feature: float(e.contribution) for e in d["g"]}
    assert got == {"a": 6.0, "b": 6.0, "c": 1.0}
    assert d["g"][0].method == "leave_one_out"
