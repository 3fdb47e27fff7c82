"""The package layout: one installed namespace, imports flowing one way, no cycles.

Imports are read from the source (AST), including those inside functions, so a lazy import
cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "adaptive_beta.models": ROOT / "models",
    "adaptive_beta.training": ROOT / "training",
    "adaptive_beta.serving": ROOT / "serving",
    "adaptive_beta": ROOT / "src" / "adaptive_beta",
}
# who may import whom (by layer); the package root and the CLI compose everything
ALLOWED = {
    "models": {"models"},
    "training": {"models", "training"},
    "serving": {"models", "serving"},
    "cli": {"models", "training", "serving", "cli", "root"},
    "root": {"models", "training", "serving", "cli", "root"},
}


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("").parts
            if rel[-1] == "__init__":
                rel = rel[:-1]
            name = ".".join((package, *rel))
            out.setdefault(name, path)
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] in ALLOWED else "root"


def _imports(path: Path, module: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        imported = _imports(path, name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in mods and m != name}
    return graph


def test_no_top_level_generic_imports_remain():
    """Every project import goes through `adaptive_beta.`; `import models` would shadow-break."""
    offenders = []
    for name, path in _modules().items():
        for imp in _imports(path, name, path.name == "__init__.py"):
            if imp.split(".")[0] in {"models", "training", "serving", "cli"}:
                offenders.append(f"{path.relative_to(ROOT)}: {imp}")
    assert offenders == []


def test_imports_flow_one_way():
    bad = [
        f"{a} -> {b}"
        for a, targets in _graph().items()
        for b in targets
        if _layer(b) not in ALLOWED[_layer(a)]
    ]
    assert bad == [], "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components; any component of size > 1 is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its own submodules is not a cycle worth flagging
    real = [c for c in cycles if not any(all(m.startswith(p + ".") or m == p for m in c) for p in c)]
    assert real == [], f"import cycles: {real}"


def test_torch_only_in_networks_among_models():
    users = [
        name
        for name, path in _modules().items()
        if name.startswith("adaptive_beta.models")
        and any(i.split(".")[0] in {"torch", "lightning"} for i in _imports(path, name, False))
    ]
    assert users == ["adaptive_beta.models.networks"]


def test_serving_never_imports_torch_or_training():
    users = [
        name
        for name, path in _modules().items()
        if name.startswith("adaptive_beta.serving")
        and any(
            i.split(".")[0] in {"torch", "lightning", "mlflow.pytorch"} for i in _imports(path, name, False)
        )
    ]
    assert users == []


@pytest.mark.slow
def test_pip_install_next_to_a_models_folder_imports_ours(tmp_path):
    """`pip install .` installs only `adaptive_beta`; a user's own `models/` does not shadow it."""
    target, src = tmp_path / "site", tmp_path / "src"
    # build from a copy of the tracked files, so the build leaves nothing in the work tree
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for rel in tracked.split():
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    top = sorted(p.name for p in target.iterdir() if not p.name.endswith((".dist-info", ".egg-info", "bin")))
    assert top == ["adaptive_beta"]
    # package data travels with the wheel
    assert (target / "adaptive_beta/models/portfolio/default_scenarios.toml").is_file()
    assert (target / "adaptive_beta/serving/compliance/templates/record.html").is_file()
    user_repo = tmp_path / "research"
    (user_repo / "models").mkdir(parents=True)
    (user_repo / "models" / "__init__.py").write_text("raise ImportError('the user models package')\n")
    (user_repo / "training").mkdir()
    (user_repo / "training" / "__init__.py").write_text("X = 'user training'\n")
    code = (
        "import adaptive_beta, adaptive_beta.models.features.compute as f, adaptive_beta.training.splits as s; "
        "import training; print(f.__file__); print(s.__file__); print(training.X)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=user_repo,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(target)) and lines[1].startswith(str(target))
    assert lines[2] == "user training"
