"""load_bundle: verified round trip, tamper detection naming the file, and a torch-free serving process."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from adaptive_beta.models.bundle.folder import BundleError, load_bundle
from adaptive_beta.models.data.schema import DataError
from adaptive_beta.models.features.spec import FeatureSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    import torch

    from adaptive_beta.training.datasets import make_synthetic_task
    from adaptive_beta.training.export import export_bundle
    from adaptive_beta.training.fit import fit_model
    from adaptive_beta.training.model_config import ModelConfig

    torch.set_num_threads(1)
    f, y, r = make_synthetic_task(n_time=300, n_assets=3, seed=5)
    cfg = ModelConfig(lookback="12d", max_steps=6, epochs=1, hidden=8, batch_size=64)
    fit = fit_model(f, y, r, ("2021-01-01", "2021-07-31"), ("2021-08-15", "2021-10-27"), cfg, progress=False)
    out = tmp_path_factory.mktemp("bundle") / "b"
    return export_bundle(
        fit, FeatureSpec(), {"model_name": "test", "inputs": {}, "max_staleness": "5d"}, out, "# Card\n"
    )


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_load_bundle_round_trips_meta_spec_and_identity(bundle_dir):
    b = load_bundle(bundle_dir)
    assert b.sha256 == hashlib.sha256((bundle_dir / "manifest.json").read_bytes()).hexdigest()
    assert isinstance(b.spec, FeatureSpec) and b.spec == FeatureSpec()
    assert b.benchmarks == ["BTCUSDT", "CRYPTO_EW"] and b.meta.model_name == "test"
    assert b.meta.stride == 2 and b.meta.lookback_bars == 12 and b.meta.steps == 6
    assert set(b.files) == {
        "model.onnx",
        "feature_spec.json",
        "normalization.json",
        "meta.json",
        "model_card.md",
    }
    assert b.model_card.startswith("# Card")


@pytest.mark.parametrize(
    "name", ["model.onnx", "feature_spec.json", "normalization.json", "meta.json", "model_card.md"]
)
def test_altered_file_raises_bundle_error_naming_it(bundle_dir, tmp_path, name):
    d = _copy(bundle_dir, tmp_path / "b")
    with open(d / name, "ab") as fh:
        fh.write(b" ")
    with pytest.raises(BundleError, match=rf"{name}.*sha256 mismatch") as info:
        load_bundle(d)
    assert info.value.file == str(d / name)
    assert isinstance(info.value, DataError)  # the CLI prints it as one line, exit 2


def test_missing_file_and_missing_manifest_are_named(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path / "b")
    (d / "normalization.json").unlink()
    with pytest.raises(BundleError, match="normalization.json.*missing"):
        load_bundle(d)
    (d / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(d)


def test_manifest_edited_to_match_a_tampered_file_changes_the_bundle_identity(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path / "b")
    original = load_bundle(d).sha256
    (d / "model_card.md").write_text("# Card (edited)\n")
    manifest = json.loads((d / "manifest.json").read_text())
    manifest["files"]["model_card.md"] = hashlib.sha256((d / "model_card.md").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert load_bundle(d).sha256 != original  # the audit log would show a different bundle


def _rewrite_meta(d: Path, edit) -> None:
    """Edit meta.json and re-sign the manifest (as a newer or older exporter would have written it)."""
    from adaptive_beta.models.bundle.folder import write_manifest

    meta = json.loads((d / "meta.json").read_text())
    edit(meta)
    (d / "meta.json").write_text(json.dumps(meta))
    write_manifest(d)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda m: m.update(schema_version=3), "schema_version 3"),
        (lambda m: m.pop("schema_version"), "no schema_version"),
    ],
)
def test_bundle_of_another_schema_fails_with_one_line(bundle_dir, tmp_path, edit, said):
    d = _copy(bundle_dir, tmp_path / "b")
    _rewrite_meta(d, edit)
    with pytest.raises(BundleError, match=said) as info:
        load_bundle(d)
    assert "\n" not in str(info.value) and "reads bundle schema 2 only" in str(info.value)
    assert info.value.file == str(d / "meta.json")


def test_meta_with_a_missing_or_unknown_field_names_it(bundle_dir, tmp_path):
    d = _copy(bundle_dir, tmp_path / "b")
    _rewrite_meta(d, lambda m: m.pop("inputs"))
    with pytest.raises(BundleError, match="field 'inputs'"):
        load_bundle(d)
    d2 = _copy(bundle_dir, tmp_path / "c")
    _rewrite_meta(d2, lambda m: m.update(name="guess-me"))
    with pytest.raises(BundleError, match="field 'name'"):
        load_bundle(d2)


def test_feature_spec_that_does_not_match_the_recorded_hash_is_refused(bundle_dir, tmp_path):
    from adaptive_beta.models.bundle.folder import write_manifest

    d = _copy(bundle_dir, tmp_path / "b")
    (d / "feature_spec.json").write_text(FeatureSpec(welch_halflife="30d").to_json())
    write_manifest(d)
    with pytest.raises(BundleError, match="feature spec hash .* differs from meta.json"):
        load_bundle(d)


def test_meta_round_trips_typed_fields(bundle_dir):
    meta = load_bundle(bundle_dir).meta
    assert meta.schema_version == 2 and meta.inputs["BTCUSDT"].kind == "bar"
    assert meta.training_period.start == "2021-01-01" and meta.training_period.end == "2021-07-31"
    assert meta.training_end() == pd.Timestamp("2021-07-31", tz="UTC")
    assert meta.required_history.series == ["BTCUSDT", "CRYPTO_EW"]


def test_serving_process_loads_and_predicts_without_importing_torch(bundle_dir):
    code = f"""
import sys, numpy as np
from adaptive_beta.models.bundle.folder import load_bundle
from adaptive_beta.models.bundle.predictor import Predictor
import adaptive_beta.models.bundle.inference, adaptive_beta.models.features.windows, adaptive_beta.models.features.spec
b = load_bundle({str(bundle_dir)!r})
p = Predictor(b, intra_op_threads=1)
x = np.random.default_rng(0).standard_normal((3, b.meta.steps, len(b.feature_columns))).astype("float32")
out = p.predict(x)
assert out["beta"].shape == (3, 2) and out["regime_prob"].shape == (3, 3), out
assert "torch" not in sys.modules, "torch was imported"
assert "lightning" not in sys.modules
print("OK", round(float(out["regime_prob"].sum()), 4))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("OK 3.0")
