"""`Predictor`: the bundle's ONNX graph in ONNX Runtime (no torch), for the service and batch scoring."""

from __future__ import annotations

import numpy as np

from adaptive_beta.models.bundle.folder import Bundle
from adaptive_beta.models.data.schema import DataError

OUTPUT_NAMES = ("beta", "beta_lo", "beta_hi", "regime_prob")


def session_options(intra_op_threads: int):
    """The one ONNX Runtime setting for every session of a bundle's graph (whole or split):
    sequential, `intra_op_threads` threads per call, all graph optimisations, warnings only."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(intra_op_threads)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class Predictor:
    """One InferenceSession per bundle; sequential execution, `intra_op_threads` threads per call.

    Sequential execution with one intra-op thread is the fastest setting for these small graphs and
    lets a multi-worker service scale by processes without oversubscribing cores.
    """

    def __init__(self, bundle: Bundle, intra_op_threads: int = 1):
        import onnxruntime as ort

        self.bundle = bundle
        self.session = ort.InferenceSession(
            str(bundle.onnx_path),
            sess_options=session_options(intra_op_threads),
            providers=["CPUExecutionProvider"],
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.n_features = len(bundle.meta.feature_columns)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """x: raw features [B, L, F] -> {"beta", "beta_lo", "beta_hi": [B, K], "regime_prob": [B, R]}."""
        x = np.asarray(x)
        if x.ndim != 3 or x.shape[2] != self.n_features or x.shape[0] < 1 or x.shape[1] < 1:
            raise DataError(
                f"model input must have shape [batch, seq, {self.n_features}] (features in bundle order), got {list(x.shape)}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        outs = self.session.run(self.output_names, {self.input_name: x})
        return dict(zip(self.output_names, outs, strict=True))
