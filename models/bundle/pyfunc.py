"""The bundle as an MLflow Model (pyfunc flavour): a thin wrapper around the ONNX bundle.

Why: `mlflow.pyfunc.load_model("models:/adaptive-beta@champion")`, `mlflow models serve` and the
Logged Models view then work on the registered version as on any MLflow model, while the
numbers stay those of the service (the same bundle folder, `load_bundle`'s hash checks, ONNX
Runtime, the same request -> panel rule).  Torch-free at load and predict: this module imports
mlflow's `PythonModel` and, lazily, numpy, pandas and onnxruntime only.

Layout of the logged model: `MLmodel`, the code that rebuilds `BundleModel` (`pyfunc_code.py`,
MLflow's models-from-code: nothing is unpickled at load; the loading environment needs
`adaptive_beta` installed, torch not), and the bundle folder itself under `artifacts/bundle/`
(`BUNDLE_ARTIFACT`), which `resolve.resolve_bundle` finds for the service.  Input and output frames: `adaptive_beta.models.bundle.panel_frame`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow.pyfunc import PythonModel

BUNDLE_ARTIFACT = "bundle"  # key of the bundle folder in the model's artifacts (-> resolve.MODEL_BUNDLE_DIR)
PIP_REQUIREMENTS = (  # what loading needs besides adaptive_beta itself (not on PyPI: install the repo)
    "mlflow>=3.17,<4",
    "onnxruntime>=1.32",
    "numpy>=2.4",
    "pandas>=3.1",
    "pydantic>=2.14",
)


class BundleModel(PythonModel):
    """`predict(panel_frame) -> forecasts frame`, one row per asset (see `panel_frame`)."""

    def load_context(self, context) -> None:
        from adaptive_beta.models.bundle.folder import load_bundle
        from adaptive_beta.models.bundle.predictor import Predictor

        self.bundle = load_bundle(Path(context.artifacts[BUNDLE_ARTIFACT]))
        self.predictor = Predictor(self.bundle)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Forecasts frame of a panel frame (the DataFrame hint: MLflow's own signature checks apply)."""
        from adaptive_beta.models.bundle.panel_frame import forecasts_frame

        return forecasts_frame(self.bundle, self.predictor, model_input)


def signature(meta):
    """Input: the panel frame's columns (extras optional); output: the forecasts frame's columns.

    Written by hand rather than inferred so optional columns stay optional and an input example
    with no open interest does not make the column forbidden.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs = Schema(
        [
            ColSpec("datetime", "timestamp"),
            ColSpec("string", "symbol"),
            ColSpec("double", "close"),
            *(ColSpec("double", c, required=False) for c in ("volume", "funding_rate", "open_interest")),
        ]
    )
    benches = list(meta.benchmarks)
    outputs = [ColSpec("string", "symbol"), ColSpec("datetime", "as_of")]
    for suffix in ("", "_lo", "_hi"):
        outputs += [ColSpec("double", f"{b}{suffix}") for b in benches]
    outputs += [ColSpec("double", f"regime_{r}") for r in meta.regimes]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def log_bundle_model(bundle_dir: str | Path, input_example=None, name: str = "model"):
    """Log the bundle folder as a pyfunc model on the active run; returns mlflow's ModelInfo.

    `input_example`: a panel frame (e.g. `panel_frame.panel_frame_from_panel`); MLflow stores it
    beside the model and checks that the model serves it.
    """
    import mlflow

    from adaptive_beta.models.bundle.folder import load_bundle

    bundle = load_bundle(bundle_dir)
    return mlflow.pyfunc.log_model(
        name=name,
        python_model=str(Path(__file__).with_name("pyfunc_code.py")),
        artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
        signature=signature(bundle.meta),
        input_example=input_example,
        pip_requirements=list(PIP_REQUIREMENTS),
    )
