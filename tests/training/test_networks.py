"""BetaNet: shapes, NaN handling, the zero-initialised correction, interval geometry, ONNX parity."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from adaptive_beta.models.networks import OUTPUT_NAMES, BetaNet, sinusoidal_positions

torch.set_num_threads(1)
ARCHS = ["gru", "transformer", "mlp", "mlp_mean"]  # mlp_mean: the MLP also reads the window mean


def _net(arch: str, **kw) -> BetaNet:
    torch.manual_seed(0)
    if arch == "mlp_mean":
        arch, kw = "mlp", {**kw, "window_mean": True}
    return BetaNet(6, [0, 1], arch=arch, hidden=16, layers=2, heads=4, dropout=0.0, **kw).eval()


def _x(b: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, length, 6, generator=g)
    x[:, -1, :2] = 1.0 + 0.2 * torch.randn(b, 2, generator=g)  # base betas
    return x


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_have_contract_shapes_and_probabilities_sum_to_one(arch):
    beta, lo, hi, prob = _net(arch)(_x(5, 11))
    assert beta.shape == lo.shape == hi.shape == (5, 2)
    assert prob.shape == (5, 3)
    np.testing.assert_allclose(prob.sum(-1).detach().numpy(), np.ones(5), atol=1e-6)
    assert torch.all(lo < beta) and torch.all(beta < hi)


@pytest.mark.parametrize("arch", ARCHS)
def test_untrained_net_returns_the_base_welch_beta_exactly(arch):
    x = _x(4, 9)
    x[0, 3, 4] = float("nan")  # NaN in a non-base feature does not leak into beta
    beta = _net(arch)(x)[0]
    torch.testing.assert_close(beta, x[:, -1, :2], rtol=0, atol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_nan_features_give_finite_outputs_equal_to_mean_imputation(arch):
    net = _net(arch)
    with torch.no_grad():
        net.delta_head.weight.normal_()
    net.set_normalization(np.full(6, 0.5), np.full(6, 2.0))
    x = _x(3, 7)
    x_nan, x_mean = x.clone(), x.clone()
    x_nan[:, 2, 3] = float("nan")
    x_mean[:, 2, 3] = 0.5  # the training mean normalises to 0, as NaN does
    out_nan, out_mean = net(x_nan), net(x_mean)
    for a, b in zip(out_nan, out_mean, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b)


def test_normalise_standardises_with_buffers_and_clips():
    net = _net("gru")
    net.set_normalization(np.arange(6.0), np.array([1.0, 2.0, 0.0, 4.0, np.nan, 1.0]))
    x = torch.tensor([[[1.0, 5.0, 7.0, float("nan"), 4.0, 100.0]]])
    z = net.normalise(x)[0, 0].numpy()
    # std 0 and NaN std become 1; NaN -> 0; |z| clipped at 10
    np.testing.assert_allclose(z, [1.0, 2.0, 5.0, 0.0, 0.0, 10.0])


def test_interval_half_width_is_z_sigma_times_calibration_scale():
    net = _net("gru", interval_level=0.9)
    assert float(net.z) == pytest.approx(1.6448536269514722, abs=1e-6)
    x = _x(2, 5)
    beta, log_sigma, _ = net.heads(x)
    _, lo, hi, _ = net(x)
    half = (hi - lo) / 2
    torch.testing.assert_close(half, 1.6448536 * torch.exp(log_sigma), rtol=1e-5, atol=1e-7)
    assert float(torch.exp(log_sigma).detach().mean()) == pytest.approx(0.3, rel=0.05)  # init sigma
    net.calib_scale.fill_(2.0)
    _, lo2, hi2, _ = net(x)
    torch.testing.assert_close((hi2 - lo2) / 2, 2 * half)


def test_mlp_reads_only_the_last_step_unless_it_also_reads_the_window_mean():
    x = _x(3, 9)
    earlier = x.clone()
    earlier[:, :-1] += 5.0  # every step but the last
    for arch, moves in (("mlp", False), ("mlp_mean", True)):
        net = _net(arch)
        with torch.no_grad():
            net.delta_head.weight.normal_()
        a, b = net(x)[0], net(earlier)[0]
        assert torch.allclose(a, b) != moves, arch
    same_mean = x.clone()
    same_mean[:, 0], same_mean[:, 1] = x[:, 1], x[:, 0]  # permuted earlier steps: the mean is unchanged
    torch.testing.assert_close(_net("mlp_mean")(same_mean)[0], _net("mlp_mean")(x)[0])


def test_lag_positions_align_on_the_newest_step_for_any_length():
    a, b = sinusoidal_positions(5, 16), sinusoidal_positions(9, 16)
    assert a.shape == (5, 16) and b.shape == (9, 16)
    torch.testing.assert_close(a, b[-5:])  # lag k has the same code whatever L
    torch.testing.assert_close(a[-1], torch.tensor([0.0, 1.0] * 8))  # lag 0: sin 0, cos 0


def test_unknown_arch_and_bad_base_index_are_rejected():
    with pytest.raises(ValueError, match="unknown arch"):
        BetaNet(4, [0], arch="lstm")
    with pytest.raises(ValueError, match="out of range"):
        BetaNet(4, [4])


@pytest.mark.slow  # ONNX export takes ~10 s each; the bundle fixtures export in the fast lane
@pytest.mark.parametrize("arch", ARCHS)
def test_onnx_export_matches_torch_for_batches_1_7_and_two_lengths(arch, tmp_path):
    from adaptive_beta.training.export import _export_onnx

    net = _net(arch)
    with torch.no_grad():  # a non-trivial correction so the encoder matters
        net.delta_head.weight.normal_(std=0.5)
    net.set_normalization(np.full(6, 0.1), np.full(6, 1.5))
    net.calib_scale.copy_(torch.tensor([0.8, 1.3]))
    path = tmp_path / "m.onnx"
    _export_onnx(net, 6, 8, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == list(OUTPUT_NAMES)
    for b in (1, 7):
        for length in (8, 21):
            x = _x(b, length, seed=b * 100 + length)
            x[0, 1, 3] = float("nan")
            ref = [t.detach().numpy() for t in net(x)]
            got = sess.run(None, {"x": x.numpy()})
            for r, g in zip(ref, got, strict=True):
                assert g.shape == r.shape
                assert np.max(np.abs(r - g)) <= 1e-5


@pytest.mark.slow  # ONNX export takes ~10 s each; the bundle fixtures export in the fast lane
def test_repeated_gru_exports_in_one_process_keep_the_sequence_length_dynamic(tmp_path):
    """torch 2.13 bakes L into the second GRU export of a process unless aten.gru's dispatch cache is cleared."""
    import onnx

    from adaptive_beta.training.export import _export_onnx

    for i, (f, hidden) in enumerate([(6, 16), (11, 13)]):
        net = BetaNet(f, [0, 1], arch="gru", hidden=hidden).eval()
        path = tmp_path / f"m{i}.onnx"
        _export_onnx(net, f, 8, path)
        dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", "seq", f]
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = torch.randn(2, 5, f)
        assert np.max(np.abs(sess.run(None, {"x": x.numpy()})[0] - net(x)[0].detach().numpy())) <= 1e-5


def test_ensemble_averages_member_corrections_variances_and_regime_probabilities():
    from adaptive_beta.models.networks import BetaEnsemble

    members = []
    for seed, w in ((0, 0.3), (1, 0.1), (2, 0.4)):
        torch.manual_seed(seed)
        m = BetaNet(6, [0, 1], hidden=8, dropout=0.0).eval()
        with torch.no_grad():
            m.delta_head.weight.normal_(std=w)
        members.append(m)
    x = _x(9, 7)
    outs = [m.heads(x) for m in members]
    ens = BetaEnsemble(members).eval()
    with torch.no_grad():
        ens.corr_scale.copy_(torch.tensor([0.5, 1.0]))
        beta, log_sigma, log_p = ens.heads(x)
    base = x[:, -1, :2]
    delta = torch.stack([o[0] - base for o in outs]).mean(0)
    torch.testing.assert_close(beta, base + torch.tensor([0.5, 1.0]) * delta)
    var = torch.stack([torch.exp(2 * o[1]) for o in outs]).mean(0)
    torch.testing.assert_close(torch.exp(2 * log_sigma), var)
    prob = torch.stack([torch.softmax(o[2], -1) for o in outs]).mean(0)
    torch.testing.assert_close(torch.softmax(log_p, -1), prob)
    # one member: exactly that member
    single = BetaEnsemble([members[0]]).eval()
    torch.testing.assert_close(single(x)[0], members[0](x)[0])


@pytest.mark.slow  # ONNX export takes ~10 s each; the bundle fixtures export in the fast lane
def test_ensemble_exports_as_one_onnx_graph_matching_torch(tmp_path):
    from adaptive_beta.models.networks import BetaEnsemble
    from adaptive_beta.training.export import _export_onnx

    members = []
    for seed in range(5):
        torch.manual_seed(seed)
        m = BetaNet(6, [0, 1], hidden=8, dropout=0.0).eval()
        with torch.no_grad():
            m.delta_head.weight.normal_(std=0.5)
        m.set_normalization(np.full(6, 0.1), np.full(6, 1.5))
        members.append(m)
    ens = BetaEnsemble(members).eval()
    ens.calib_scale.copy_(torch.tensor([0.8, 1.3]))
    path = tmp_path / "e.onnx"
    _export_onnx(ens, 6, 8, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for b, length in ((1, 8), (7, 21)):
        x = _x(b, length, seed=b + length)
        ref = [t.detach().numpy() for t in ens(x)]
        got = sess.run(None, {"x": x.numpy()})
        for r, g in zip(ref, got, strict=True):
            assert g.shape == r.shape and np.max(np.abs(r - g)) <= 1e-5
