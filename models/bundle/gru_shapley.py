"""Exact group Shapley values of a one-GRU bundle, with the GRU's input projection summed per group.

Why: a stored-state bar explains 200 windows x 2^7 coalitions = 25,600 model windows (issue 12:
`POST /bars` under 1 s on 2 cores).  In the bundle's graph the features reach the network only
through the GRU's input projection W x_t (after a column-wise normalisation: subtract the mean,
divide by the sd, NaN -> 0, clip), and ~90 % of the model's arithmetic is that projection
(3H x F per step, F = 119 features against H = 8 hidden units for the benchmark's model).  A
coalition takes whole columns from the window or from the baseline, so its projection is

    W z_S = W z_base + sum_{g in S} W_g (z_x,g - z_base,g)      (W_g: the columns of group g)

which is computed here once per window and group (float64), summed per coalition, and fed to
the same graph with the GRU's input weights replaced by the identity (x * 1 + 0 is exact in
float32), so ONNX Runtime runs only the recurrence and the heads for each coalition.  The values
are the game's values of `shapley.batched_beta_shapley`, computed in another order: they differ
by float32 rounding only (< 1e-6 on the checked probe; the tests bound it on a trained bundle).

`GruCoalitions.from_bundle` returns None for any other graph (no GRU, several, bidirectional, a
normalisation that is not column-wise on the probe, or values that do not match the plain path
within 1e-6 on it): the caller then uses the plain path.  Torch-free (onnx + onnxruntime).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from adaptive_beta.models.bundle.shapley import baseline_from_means, coalition_batch, coalition_masks

ROWS_PER_CALL = 1024  # coalition rows per ORT call: gates [L, rows, 3H] float32 (~3 MB for L 32, H 8)
PROBE_TOLERANCE = 1e-6  # max |beta| difference from the plain graph on the probe, else not used
log = logging.getLogger(__name__)


class GruCoalitions:
    """Coalition values of beta for windows of one bundle (see the module docstring)."""

    def __init__(
        self, prefix, suffix, weight: np.ndarray, groups: Sequence[Sequence[int]], means: np.ndarray
    ):
        self.prefix, self.suffix = (
            prefix,
            suffix,
        )  # ORT sessions: x -> GRU input; (x last step, gates) -> beta
        self.weight = weight  # [3H, F] float64: the GRU's input weights
        self.groups = [np.asarray(g, dtype=np.int64) for g in groups]
        self.means = np.asarray(means, dtype=np.float32)
        n_features = weight.shape[1]
        grouped = np.zeros(n_features, dtype=bool)
        for g in self.groups:
            grouped[g] = True
        self.rest = np.flatnonzero(~grouped)  # columns in no group: always from the window
        self.masks = coalition_masks(len(self.groups)).astype(np.float64)  # [2^G, G]
        self._baselines: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by window length

    # ------------------------------------------------------------------------------- build
    @classmethod
    def from_bundle(
        cls, bundle, groups: Sequence[Sequence[int]], means: np.ndarray, predict, intra_op_threads: int = 1
    ) -> GruCoalitions | None:
        """The fast path for `bundle`, or None if its graph does not have the one-GRU shape or the
        probe does not reproduce `predict` (the plain model) within PROBE_TOLERANCE."""
        try:
            made = _split_graph(bundle.onnx_path, intra_op_threads)
        except (ValueError, KeyError, RuntimeError) as exc:
            log.info("group Shapley by the plain graph: %s", exc)
            return None
        if made is None:
            return None
        prefix, suffix, weight = made
        fast = cls(prefix, suffix, weight, groups, means)
        try:
            fast._probe(predict, bundle.meta.lookback_bars // max(1, bundle.meta.stride))
        except (ValueError, RuntimeError) as exc:
            log.warning("group Shapley by the plain graph: the GRU split does not reproduce it (%s)", exc)
            return None
        return fast

    def _probe(self, predict, length: int) -> None:
        """Raise ValueError unless the split graph gives the plain graph's values on a probe window
        (training means plus noise, some NaN, some far outside the clip)."""
        rng = np.random.default_rng(12)
        f = self.weight.shape[1]
        scale = np.abs(self.means) + 1.0
        x = (self.means + rng.normal(0.0, 3.0, (2, max(2, length), f)) * scale).astype(np.float32)
        x[0, :3, ::7] = np.nan
        x[1, -1, ::5] = self.means[::5] + 50.0 * scale[::5]
        base = baseline_from_means(self.means, lookback=x.shape[1])
        z = self._gru_input(x)
        zc = self._gru_input(coalition_batch(x[:1], base, self.groups))
        zb = self._gru_input(base[None])
        sel = coalition_batch(np.ones((1, 1, f), np.float32), np.zeros((1, f), np.float32), self.groups)
        want_z = np.where(sel[:, 0][None] > 0, z[:, :1], zb)  # [L, 2^G, F]
        if not np.array_equal(zc, want_z):
            raise ValueError("the graph's normalisation is not column-wise")
        rows = np.r_[
            0 : 2 * len(zc) : 7, 2 * len(zc) - 1
        ]  # every 7th coalition of both windows and the last:
        # few rows, so the plain session's memory arena does not grow for the probe
        want = predict(coalition_batch(x, base, self.groups)[rows])["beta"].astype(np.float64)
        got = self.beta_values(x).reshape(-1, want.shape[1])[rows]
        err = float(np.max(np.abs(got - want)))
        if not err <= PROBE_TOLERANCE:
            raise ValueError(f"max difference {err:.2e} > {PROBE_TOLERANCE}")

    # ------------------------------------------------------------------------------- values
    def _gru_input(self, x: np.ndarray) -> np.ndarray:
        """The graph's own GRU input for windows x [N, L, F]: [L, N, F] float32."""
        return self.prefix.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def _projections(self, z: np.ndarray) -> np.ndarray:
        """Per-group input projections [L, N, G + 1, 3H] float64 of GRU inputs z [L, N, F] (the
        last entry: the columns in no group), laid out so that one stacked matmul with the
        coalition masks gives the GRU's [L, batch, 3H] input directly (no transposing copy)."""
        z64 = z.astype(np.float64)
        parts = [z64[..., g] @ self.weight[:, g].T for g in (*self.groups, self.rest)]  # [L, N, 3H] each
        return np.stack(parts, axis=2)

    def _baseline(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(the baseline window [L, F], its per-group projections [L, 1, G+1, 3H]) for windows of
        `length` steps: a function of the training means only, so made once per length (a
        stateless one-asset request spent ~1/5 of its Shapley time re-deriving it)."""
        made = self._baselines.get(length)
        if made is None:
            base = baseline_from_means(self.means, lookback=length)
            made = (base, self._projections(self._gru_input(base[None])))
            for a in made:
                a.setflags(write=False)  # shared by every later call
            self._baselines[length] = made
        return made

    def beta_values(self, x: np.ndarray) -> np.ndarray:
        """v(S) for every window and coalition: [N, 2^G, K] float32 beta (coalitions in the
        order of `coalition_masks`)."""
        x = np.asarray(x, dtype=np.float32)
        n, length, _ = x.shape
        base, pb = self._baseline(length)
        px = self._projections(self._gru_input(x))  # [L, N, G+1, 3H]
        diff = px[:, :, :-1] - pb[:, :, :-1]  # [L, N, G, 3H]: what each group adds to the empty coalition
        start = pb.sum(axis=2) + (px[:, :, -1] - pb[:, :, -1])  # [L, N, 3H]: the empty coalition
        n_coal, rows = self.masks.shape[0], self.weight.shape[0]
        last = coalition_batch(x[:, -1:], base[-1:], self.groups)  # [N * 2^G, 1, F]: base betas
        per = max(1, ROWS_PER_CALL // n_coal)
        out = []
        for s in range(0, n, per):
            e = min(n, s + per)
            coal = np.matmul(self.masks, diff[:, s:e])  # [L, m, 2^G, 3H]
            coal += start[:, s:e, None]
            gates = coal.astype(np.float32).reshape(length, (e - s) * n_coal, rows)  # the GRU's [L, B, 3H]
            out.append(self.suffix.run(["beta"], {"x": last[s * n_coal : e * n_coal], "gates": gates})[0])
        return np.concatenate(out).reshape(n, n_coal, -1)


def _split_graph(onnx_path, intra_op_threads: int):
    """(prefix session, suffix session, W [3H, F] float64) of a graph with one forward GRU, or None."""
    import onnx
    from onnx import helper, numpy_helper
    from onnx.utils import Extractor

    model = onnx.load(str(onnx_path))
    grus = [n for n in model.graph.node if n.op_type == "GRU"]
    if len(grus) != 1:
        return None
    gru = grus[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in gru.attribute}
    if attrs.get("direction", b"forward") != b"forward" or attrs.get("layout", 0) != 0:
        return None
    inits = {i.name: i for i in model.graph.initializer}
    if gru.input[1] not in inits or [i.name for i in model.graph.input] != ["x"]:
        return None
    weight = numpy_helper.to_array(inits[gru.input[1]]).astype(np.float64)  # [1, 3H, F]
    if weight.ndim != 3 or weight.shape[0] != 1:
        return None
    rows = weight.shape[1]
    prefix = Extractor(model).extract_model(["x"], [gru.input[0]])
    gru.input[0] = "gates"
    ident_name = "gates_identity"
    model.graph.initializer.append(numpy_helper.from_array(np.eye(rows, dtype=np.float32)[None], ident_name))
    gru.input[1] = ident_name
    model.graph.input.append(
        helper.make_tensor_value_info("gates", onnx.TensorProto.FLOAT, [None, None, rows])
    )
    suffix = Extractor(model).extract_model(["x", "gates"], ["beta"])
    return _session(prefix, intra_op_threads), _session(suffix, intra_op_threads), weight[0]


def _session(model, intra_op_threads: int):
    import onnxruntime as ort

    from adaptive_beta.models.bundle.predictor import session_options

    return ort.InferenceSession(
        model.SerializeToString(),
        sess_options=session_options(intra_op_threads),
        providers=["CPUExecutionProvider"],
    )
