"""The research notebooks run end to end with their default (small) parameters, and say what they should.

Each notebook is executed by nbclient in a fresh python3 kernel of this interpreter, in a temporary
working directory; MLflow stores and audit logs go to temporary folders the notebooks create
themselves (the autouse fixture of tests/conftest.py also points the kernel's MLFLOW_TRACKING_URI
at a per-test store, which the notebooks override with their own).  The checks read the cell
outputs: tables printed, numbers within sane ranges, figures rendered inline.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300


def execute(name: str, workdir: Path, monkeypatch, **env: str):
    """Run notebooks/<name> top to bottom; return the executed notebook."""
    monkeypatch.delenv("ABETA_NOTEBOOK_MODEL", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


def texts(nb) -> str:
    """All printed text and text/plain results of the executed notebook, joined."""
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o["text"])
            elif "data" in o:
                out.append(o["data"].get("text/plain", ""))
    return "\n".join(out)


def n_images(nb) -> int:
    return sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


def number_after(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"pattern {pattern!r} not found in the notebook output"
    return float(m.group(1))


def test_notebooks_are_committed_without_outputs_and_with_a_parameters_cell():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.get("outputs") for c in code), f"{path.name} has stored outputs"
        params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(params) == 1 and "SMALL = True" in params[0].source, path.name
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} == {
        "01_quickstart.ipynb",
        "02_real_data_study.ipynb",
        "03_compliance_walkthrough.ipynb",
    }


@pytest.mark.slow
def test_quickstart_trains_scores_against_baselines_and_explains_additively(tmp_path, monkeypatch):
    nb = execute("01_quickstart.ipynb", tmp_path, monkeypatch)
    out = texts(nb)
    # the baseline scorecard and the training scorecard, with the model row beside the baselines
    assert out.count("== BTCUSDT (pooled)") >= 2 and "== CRYPTO_EW (pooled)" in out
    assert re.search(r"^\s*welch_hl60d\s+baseline\s+\d+", out, re.M)
    model_row = re.search(r"^\s*adaptive_beta_gru\s+model\s+(\d+)\s+([\d.]+)", out, re.M)
    assert model_row, "the scorecard has no model row"
    assert int(model_row.group(1)) > 100 and 0.0 < float(model_row.group(2)) < 1.0
    # the simulator's target noise floor is a real number of the order of the betas' spread
    assert 0.05 < number_after(r"noise floor of the target\): ([\d.]+)", out) < 1.0
    # group Shapley values add up to f(x) - f(baseline) (7 groups -> 128 coalitions)
    assert "128 coalitions in one ONNX Runtime call" in out
    assert number_after(r"\(f\(x\) - f\(baseline\)\)\| = ([\d.e+-]+)", out) < 1e-5
    assert "MLflow run " in out and "registered version 1" in out
    # realised-vs-true plot, the logged forecast-vs-realised figure and the waterfall
    assert n_images(nb) >= 3


@pytest.mark.slow
@pytest.mark.realdata
def test_real_data_study_scores_2021_2022_folds_and_backtests_the_overlays(
    real_data_dir, tmp_path, monkeypatch
):
    nb = execute("02_real_data_study.ipynb", tmp_path, monkeypatch, ABETA_REAL_DATA=str(real_data_dir))
    out = texts(nb)
    folds = re.findall(r"^fold\d+ (\d{4})-\d\d-\d\d \.\. (\d{4})-\d\d-\d\d", out, re.M)
    assert folds and {y for pair in folds for y in pair} <= {"2021", "2022"}
    assert folds[0] == ("2021", "2021") and out.count("== BTCUSDT (pooled)") == 1
    assert "model: skipped (set ABETA_NOTEBOOK_MODEL" in out
    # the overlays neutralise most of the unhedged book's beta to BTC over 2021-2022
    unhedged = number_after(r"full period.*?\n(?:.*\n)*?unhedged\s+([-\d.]+)", out)
    rolling = number_after(r"full period.*?\n(?:.*\n)*?rolling_ols_30d\s+([-\d.]+)", out)
    welch = number_after(r"full period.*?\n(?:.*\n)*?welch_hl60d\s+([-\d.]+)", out)
    assert unhedged > 0.8 and abs(rolling) < 0.2 and abs(welch) < 0.2
    assert "episode luna_2022" in out and "episode ftx_2022" in out
    assert n_images(nb) == 3  # altcoin betas, P&L + rolling beta, May 2022 zoom


@pytest.mark.slow
def test_compliance_walkthrough_logs_verifies_catches_tampering_and_reports(tmp_path, monkeypatch):
    nb = execute("03_compliance_walkthrough.ipynb", tmp_path, monkeypatch)
    out = texts(nb)
    n_calls = int(number_after(r"(\d+) calls served and logged", out))
    assert n_calls == 21  # 10 days x 2 assets + one /explain
    assert f"original: ok=True, records={n_calls}" in out
    assert "append-only: UPDATE is not allowed" in out
    assert "tampered copy: ok=False, kind=modified, first bad seq=3" in out
    assert f"exported {n_calls} records to CSV and {n_calls} to parquet" in out
    assert re.search(rf"{n_calls} records; chain ok", out)
    assert re.search(r"/forecast\s+20\b", out) and re.search(r"/explain\s+1\b", out)
