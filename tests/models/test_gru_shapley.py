"""The one-GRU fast path of group Shapley (models/bundle/gru_shapley.py) gives the plain path's
coalition values on a real trained bundle, its Shapley values add up, and any graph it cannot
reproduce falls back to the plain path (None)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.gru_shapley import GruCoalitions, _split_graph
from adaptive_beta.models.bundle.inference import make_inputs
from adaptive_beta.models.bundle.predictor import Predictor
from adaptive_beta.models.bundle.shapley import (
    baseline_from_means,
    batched_beta_shapley,
    bundle_groups,
    coalition_batch,
    shapley_of_windows,
    training_means,
)

pytest.importorskip("torch")  # the bundle is trained here


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from adaptive_beta.training.toy_bundle import build_real_bundle

    facts = build_real_bundle(tmp_path_factory.mktemp("gru"), n_assets=5, days=420, seed=4)
    bundle = load_bundle(facts["bundle"])
    pred = Predictor(bundle, intra_op_threads=1)
    groups = list(bundle_groups(bundle.meta).values())
    x = make_inputs(facts["panel"], bundle).x
    return bundle, pred, groups, training_means(bundle), x


def test_fast_values_equal_the_plain_graphs_values_on_a_trained_bundle(setup):
    bundle, pred, groups, means, x = setup
    fast = GruCoalitions.from_bundle(bundle, groups, means, pred.predict)
    assert fast is not None  # the exported BetaNet is one forward GRU
    got = fast.beta_values(x).astype(np.float64)  # [N, 2^G, K]
    base = baseline_from_means(means, lookback=x.shape[1])
    want = pred.predict(coalition_batch(x, base, groups))["beta"].astype(np.float64)
    assert got.shape == (x.shape[0], 2 ** len(groups), len(bundle.benchmarks))
    assert np.max(np.abs(got.reshape(want.shape) - want)) <= 1e-6
    assert np.abs(want).max() > 0.1  # a real beta, not zeros that would agree trivially


def test_fast_shapley_adds_up_and_equals_the_plain_shapley(setup):
    bundle, pred, groups, means, x = setup
    fast = GruCoalitions.from_bundle(bundle, groups, means, pred.predict)
    phi, base, full = shapley_of_windows(fast.beta_values(x))
    p_phi, p_base, p_full = batched_beta_shapley(pred.predict, x, means, groups)
    beta = pred.predict(x)["beta"].astype(np.float64)
    np.testing.assert_allclose(phi.sum(axis=1), full - base, atol=1e-9)  # efficiency
    assert np.max(np.abs(full - beta)) <= 1e-6  # the explained value is the forecast
    assert np.max(np.abs(phi.sum(axis=1) - (beta - p_base))) <= 2e-6
    assert np.max(np.abs(phi - p_phi)) <= 2e-6
    assert np.max(np.abs(base - p_base)) <= 1e-6
    assert np.abs(p_phi).max() > 1e-4  # groups do move the beta


def test_a_predict_the_split_cannot_reproduce_falls_back_to_the_plain_path(setup):
    bundle, pred, groups, means, _ = setup

    def shifted(x):  # a different model than the graph the split is made from
        out = pred.predict(x)
        return {**out, "beta": out["beta"] + 1e-3}

    assert GruCoalitions.from_bundle(bundle, groups, means, shifted) is None


def test_a_graph_without_a_gru_is_not_split(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Identity", ["x"], ["beta"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, 3])],
        [helper.make_tensor_value_info("beta", TensorProto.FLOAT, [None, None, 3])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    assert _split_graph(path, 1) is None
    fake = SimpleNamespace(onnx_path=path, meta=SimpleNamespace(lookback_bars=4, stride=1))
    assert GruCoalitions.from_bundle(fake, [[0], [1, 2]], np.zeros(3, np.float32), None) is None


def test_the_baseline_is_made_once_per_length_and_gives_the_same_values(setup):
    """`_baseline` is cached per window length: a second call (same or other windows) gives the
    values a fresh `GruCoalitions` gives, bit for bit, and the cached arrays are read-only."""
    bundle, pred, groups, means, x = setup
    fast = GruCoalitions.from_bundle(bundle, groups, means, pred.predict)
    first = fast.beta_values(x)
    again = fast.beta_values(x[::-1].copy())[::-1]
    fresh = GruCoalitions.from_bundle(bundle, groups, means, pred.predict).beta_values(x[::-1].copy())[::-1]
    assert np.array_equal(again, fresh) and np.array_equal(first, again)
    base, pb = fast._baseline(x.shape[1])
    assert fast._baseline(x.shape[1])[1] is pb and not pb.flags.writeable and not base.flags.writeable
