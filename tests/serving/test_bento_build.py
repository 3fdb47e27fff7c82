"""The deployment path: a bundle made by `abeta train` -> BentoML's model store -> `bentoml build`
(the repository's bentofile.yaml) -> the Bento served by `bentoml serve`, loading the bundle from
the Bento's model, not from MLflow.  BENTOML_HOME is a temporary folder; nothing is downloaded
(bentofile.yaml turns package locking off).  `bentoml containerize` needs docker: not run here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.serving.conftest import API_KEYS_ENV, _free_port, auth

ROOT = Path(__file__).resolve().parents[2]
BENTOML = [sys.executable, "-m", "bentoml"]


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            out[re.sub(r"\[.*\]", "", name).lower()] = ver
    return out


def test_bento_requirements_are_pinned_as_the_environment_and_leave_torch_out():
    bento = _pins(ROOT / "requirements" / "bento.txt")
    env = _pins(ROOT / "requirements" / "constraints.txt")
    assert len(bento) >= 10 and {"bentoml", "onnxruntime", "pandas"} <= set(bento)
    assert {k: env.get(k) for k in bento} == bento
    assert not {"torch", "lightning", "mlflow"} & set(bento)


@pytest.fixture(scope="module")
def built(trained_bundle, tmp_path_factory):
    root = trained_bundle["root"]
    home = tmp_path_factory.mktemp("bentoml-home")
    env = {
        **os.environ,
        "BENTOML_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
        "ABETA_MLRUNS": str(root / "mlruns"),
    }
    abeta = [sys.executable, "-m", "adaptive_beta.cli.main"]
    export = [*abeta, "models", "export-bento", "--model", "models:/adaptive-beta@challenger"]
    res = subprocess.run(export, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    again = subprocess.run(export, env=env, capture_output=True, text=True, timeout=300)
    offline = {  # any download attempt during the build fails: a closed proxy port, no index
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "PIP_NO_INDEX": "1",
        "UV_OFFLINE": "1",
    }
    build = subprocess.run(
        [*BENTOML, "build", str(ROOT), "--output", "tag"],
        env={**env, **offline},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return {"env": env, "home": home, "export": res.stdout, "again": again.stdout, "build": build.stdout}


def _list(env, what: str) -> list[dict]:
    res = subprocess.run(
        [*BENTOML, *what.split(), "-o", "json"], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_export_puts_the_registered_bundle_in_the_model_store_once_with_its_metadata(built, trained_bundle):
    from adaptive_beta.models.bundle.folder import load_bundle

    sha = load_bundle(trained_bundle["bundle"]).sha256
    models = _list(built["env"], "models list")
    assert [m["tag"] for m in models] == [f"adaptive-beta:{sha[:16]}"]  # the second export added nothing
    assert built["export"].splitlines()[0] == built["again"].splitlines()[0]
    info = yaml.safe_load(next((built["home"] / "models" / "adaptive-beta").glob("*/model.yaml")).read_text())
    assert info["metadata"]["bundle_sha256"] == sha and info["metadata"]["mlflow_version"] == "1"
    assert info["labels"]["mlflow_alias"] == "challenger" and info["metadata"]["mlflow_run_id"]
    assert info["metadata"]["source"] == "models:/adaptive-beta@challenger"


def test_bentoml_build_packs_the_service_and_the_model_and_no_local_state(built):
    bentos = _list(built["env"], "list")
    assert len(bentos) == 1 and bentos[0]["tag"].startswith("adaptive_beta:")
    folder = next((built["home"] / "bentos" / "adaptive_beta").glob("*/bento.yaml")).parent
    spec = yaml.safe_load((folder / "bento.yaml").read_text())
    assert spec["service"] == "serving.bento_entry:AdaptiveBeta"
    assert [m["tag"] for m in spec["models"]] == [_list(built["env"], "models list")[0]["tag"]]
    assert {e["name"]: e["value"] for e in spec["envs"]} == {"ABETA_HOME": "/home/bentoml/abeta"}
    src = {p.relative_to(folder / "src").as_posix() for p in (folder / "src").rglob("*") if p.is_file()}
    for needed in ("serving/service.py", "serving/bento_entry.py", "models/bundle/predictor.py"):
        assert needed in src
    assert any(p.startswith("serving/compliance/templates/") for p in src)
    assert not [
        p for p in src if p.split("/")[0] in ("tests", "training", "mlruns", "data", ".venv", "notebooks")
    ]
    reqs = _pins(folder / "env" / "python" / "requirements.txt")
    assert "torch" not in reqs and reqs["onnxruntime"] == "1.32.0"
    assert not (folder / "env" / "python" / "requirements.lock.txt").exists()  # nothing resolved online


def test_the_image_dockerfile_serves_the_packed_model_without_torch(built, tmp_path):
    """The Dockerfile `bentoml containerize` would build (generated offline; docker is not run)."""
    out = tmp_path / "Dockerfile"
    code = f"import bentoml.container as c; c.get_containerfile('adaptive_beta:latest', output_path={str(out)!r})"
    res = subprocess.run(
        [sys.executable, "-c", code], env=built["env"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    docker = out.read_text()
    assert "FROM python:3.11-slim" in docker and "EXPOSE 3000" in docker
    assert "ENV ABETA_HOME=$ABETA_HOME" in docker and "ABETA_MODEL" not in docker  # the Bento's model
    assert "pip install -r $BENTO_PATH/env/python/requirements.txt" in docker and "torch" not in docker


def test_the_bento_maps_its_source_folders_when_the_package_is_not_installed(built):
    """In the image adaptive_beta is not pip-installed: bento_entry maps the Bento's folders."""
    folder = next((built["home"] / "bentos" / "adaptive_beta").glob("*/bento.yaml")).parent / "src"
    code = (
        "import sys\n"
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]\n"
        "import importlib.util; assert importlib.util.find_spec('adaptive_beta') is None\n"
        "sys.path.insert(0, '.')\n"
        "import importlib; e = importlib.import_module('serving.bento_entry')\n"
        "import adaptive_beta.models.bundle.resolve as r\n"
        "print(r.__file__); print('torch' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        cwd=folder,
        env=built["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    path, torch_loaded = res.stdout.strip().splitlines()[-2:]
    assert (
        Path(path).resolve() == (folder / "models" / "bundle" / "resolve.py").resolve()
        and torch_loaded == "False"
    )


def test_the_served_model_is_the_bentos_unless_abeta_model_names_one(built):
    code = (
        "import bentoml\n"
        "from adaptive_beta.models.settings import Settings\n"
        "from adaptive_beta.serving.bento_store import served_model\n"
        "b = bentoml.get('adaptive_beta:latest')\n"
        "print(served_model(Settings(), b)); print(served_model(Settings(model='/x'), b))\n"
        "print(served_model(Settings(), None))\n"
    )
    env = {k: v for k, v in built["env"].items() if k != "ABETA_MODEL"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    tag = _list(built["env"], "models list")[0]["tag"]
    assert res.stdout.split() == [f"bento:{tag}", "/x", "models:/adaptive-beta@champion"]


def test_serving_the_bento_loads_the_bundle_from_its_model_store(built, trained_bundle, tmp_path):
    from adaptive_beta.models.bundle.folder import load_bundle

    tag = _list(built["env"], "list")[0]["tag"]
    port = _free_port()
    env = {
        **built["env"],
        "ABETA_API_KEYS": API_KEYS_ENV,
        "ABETA_HOME": str(tmp_path),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/empty.db",  # not the registry: the Bento's model
    }
    env.pop("ABETA_MODEL", None)  # run as a Bento, the service loads the Bento's model by itself
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [*BENTOML, "serve", tag, "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=open(log, "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        card = httpx.get(url + "/model", headers=auth("trader"), timeout=10)
        assert card.status_code == 200, card.text
        body = card.json()
        assert body["bundle_sha256"] == load_bundle(trained_bundle["bundle"]).sha256
        assert body["version"] == "1" and body["alias"] == "challenger"
        spec = httpx.get(url + "/openapi.json", headers=auth("compliance"), timeout=10)
        assert spec.status_code == 200 and "/forecast" in spec.json()["paths"]
        assert httpx.get(url + "/openapi.json", timeout=10).status_code == 401
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


# --- requirements/bento.txt covers every import the service can reach --------------------------
FOLDERS = {"adaptive_beta.models": ROOT / "models", "adaptive_beta.serving": ROOT / "serving"}
FOLDERS["adaptive_beta"] = ROOT / "src" / "adaptive_beta"


def _module_file(name: str) -> Path | None:
    for prefix in sorted(FOLDERS, key=len, reverse=True):
        if name == prefix or name.startswith(prefix + "."):
            base = (
                FOLDERS[prefix].joinpath(*name[len(prefix) :].strip(".").split("."))
                if name != prefix
                else FOLDERS[prefix]
            )
            for cand in (base.with_suffix(".py"), base / "__init__.py"):
                if cand.is_file():
                    return cand
    return None


def _reached_imports(start: str) -> tuple[set[str], set[str]]:
    """(project modules, third-party top-level names) reachable from `start` by any import
    statement, lazy ones inside functions included (an endpoint imports what it needs late)."""
    import ast

    seen, third, todo = set(), set(), [start]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if name in seen or path is None:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for n in names:
                if n.startswith("adaptive_beta"):
                    todo.append(n)
                elif n.split(".")[0] not in sys.stdlib_module_names:
                    third.add(n.split(".")[0])
    return seen, third


def _closure(requirements: list[str]) -> set[str]:
    """Installed distributions required (transitively) by `requirements`, extras honoured."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = {canonicalize_name(d.metadata["Name"]): d for d in md.distributions()}
    seen: set[str] = set()
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen or name not in dists:
            continue
        seen |= {key, name}
        for line in dists[name].requires or []:
            sub = Requirement(line)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(e) for e in envs):
                todo.append(sub)
    return {s for s in seen if "[" not in s}


def test_bento_requirements_cover_every_import_the_service_can_reach():
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    modules, third = _reached_imports("adaptive_beta.serving.service")
    assert "adaptive_beta.serving.compliance.app" in modules and len(modules) > 40
    assert not any(m.startswith("adaptive_beta.training") for m in modules)
    lines = [
        ln.split("#")[0].strip() for ln in (ROOT / "requirements" / "bento.txt").read_text().splitlines()
    ]
    have = _closure([ln for ln in lines if ln])
    by_module = md.packages_distributions()
    missing = {
        m: by_module.get(m) for m in third if not {canonicalize_name(d) for d in by_module.get(m, [])} & have
    }
    assert missing == {}, f"imported by the service but not installed by requirements/bento.txt: {missing}"
