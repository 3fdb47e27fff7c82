"""`abeta models export-bento` and the `bento:` model URI, on a tiny bundle in a temporary
BENTOML_HOME (subprocesses: BentoML reads its home once per process)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.serving.conftest import build_tiny_bundle


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}


def _abeta(env, *args):
    cmd = [sys.executable, "-m", "adaptive_beta.cli.main", "models", "export-bento", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_bento_uri_resolves_to_the_exported_bundle_with_the_same_bytes(tmp_path, env):
    build_tiny_bundle(tmp_path / "tiny")
    res = _abeta(env, "--model", str(tmp_path / "tiny"))
    assert res.returncode == 0, res.stderr
    code = textwrap.dedent(
        f"""
        from adaptive_beta.models.bundle.folder import load_bundle
        from adaptive_beta.serving.app_state import resolve_model
        path, version, alias = resolve_model("bento:adaptive-beta:latest")
        print(load_bundle(path).sha256 == load_bundle({str(tmp_path / "tiny")!r}).sha256, version, alias)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "None", "None"]  # a folder export: no MLflow version or alias
    sha16 = res.stdout.split()[2].split(":")[1]
    assert len(sha16) == 16 and (tmp_path / "bentoml" / "models" / "adaptive-beta" / sha16).is_dir()


def test_missing_model_and_missing_bento_tag_are_one_line_errors(tmp_path, env):
    res = _abeta(env, "--model", str(tmp_path / "nothing"))
    assert res.returncode == 2 and str(tmp_path / "nothing") in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    code = (
        "from adaptive_beta.models.bundle.resolve import check_model; check_model('bento:adaptive-beta:v9')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "no BentoML model 'adaptive-beta:v9'" in out.stderr
