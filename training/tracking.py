"""MLflow tracking set-up and the run context every training run logs.

The store defaults to SQLite metadata plus artifacts under the project's `mlruns/` (MLflow 3's
plain file store is in maintenance mode); `MLFLOW_TRACKING_URI` overrides it as usual.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

from adaptive_beta.models.bundle.resolve import default_tracking_uri

EXPERIMENT = "adaptive-beta"
PACKAGES = (
    "torch",
    "lightning",
    "mlflow",
    "onnx",
    "onnxruntime",
    "pandas",
    "numpy",
    "bentoml",
    "statsmodels",
)


def setup_mlflow(experiment: str = EXPERIMENT) -> str:
    """Point MLflow at the project store and return the experiment id (created if missing)."""
    import mlflow

    uri = default_tracking_uri()
    mlflow.set_tracking_uri(uri)
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is not None:
        mlflow.set_experiment(experiment)
        return exp.experiment_id
    artifact_location = None
    if uri.startswith("sqlite:///"):  # keep artifacts beside the database (the project's mlruns/)
        artifact_location = str(Path(uri.removeprefix("sqlite:///")).parent / "artifacts")
    exp_id = mlflow.create_experiment(experiment, artifact_location=artifact_location)
    mlflow.set_experiment(experiment)
    return exp_id


def git_commit() -> str:
    """Commit of the working tree (with `+dirty` when it has uncommitted changes), or `unknown`."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def log_json(obj, name: str) -> None:
    """Log a JSON artifact (MLflow's log_dict, kept in one place for the file naming)."""
    import mlflow

    mlflow.log_dict(json.loads(json.dumps(obj, default=str)), name)


def log_text(text: str, name: str) -> None:
    import mlflow

    mlflow.log_text(text, name)


def log_figure(fig, name: str) -> None:
    import matplotlib.pyplot as plt
    import mlflow

    mlflow.log_figure(fig, name)
    plt.close(fig)


def log_folder(folder: Path, artifact_path: str) -> None:
    import mlflow

    mlflow.log_artifacts(str(folder), artifact_path=artifact_path)


def scratch_dir(prefix: str = "abeta-") -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
