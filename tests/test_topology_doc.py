"""docs/topology.md (issue 14 item 5) stays true to the code.

Its shell blocks start servers (PostgreSQL, `mlflow server`, two `abeta serve`), so they are not run
here; what can be checked without servers is: every `abeta` command it spells exists with each
option, every setting it names is a real one, the Ray line matches the code, the README links it.
The server half (PostgreSQL + `mlflow server` + train/promote/serve) runs for real in
tests/training/test_mlflow_server_pg.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.test_readme import fenced_blocks, shell_lines

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "topology.md"


def _abeta_commands() -> list[list[str]]:
    cmds = []
    for tag, body in fenced_blocks(DOC.read_text()):
        if tag != "bash":
            continue
        for line in shell_lines(body):
            for part in re.split(r"&&|\|\||;|&(?!&)", line):
                words = part.split()
                while words and (words[0] == "setsid" or "=" in words[0]):
                    words = words[1:]
                if words and words[0] == ".venv/bin/abeta":
                    cmds.append(words[1:])
    return cmds


def test_every_abeta_command_of_the_topology_exists_with_its_options():
    from typer.testing import CliRunner

    from adaptive_beta.cli.main import app

    cmds = _abeta_commands()
    names = {" ".join(w for w in c if re.fullmatch(r"[a-z][a-z-]*", w))[:20] for c in cmds}
    assert len(cmds) >= 7, cmds  # simulate, train, promote, models list, 2 x serve, audit verify
    assert any(c[0] == "serve" for c in cmds) and any(c[0] == "train" for c in cmds), names
    runner = CliRunner()
    for words in cmds:
        path = []
        for w in words:
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            path.append(w)
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, f"`abeta {' '.join(path)}` is not a command"
        for opt in [w for w in words if w.startswith("--")]:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", res.output), (
                f"`abeta {' '.join(path)}` has no option {opt}"
            )


def test_every_setting_the_topology_names_is_a_real_one():
    from adaptive_beta.models.settings import Settings

    named = set(re.findall(r"\bABETA_[A-Z_]+[A-Z]\b", DOC.read_text()))
    known = set(Settings.variables())
    prefixes = {n for n in named if n.endswith("_MAX")}  # `ABETA_MAX_*`: a family
    assert named - prefixes <= known, sorted(named - prefixes - known)
    for must in (
        "ABETA_MODEL",
        "ABETA_AUDIT_DB",
        "ABETA_MARKET_DB",
        "ABETA_API_KEYS",
        "ABETA_SESSION_SECRET",
    ):
        assert must in named
    assert "MLFLOW_TRACKING_URI" in DOC.read_text()


def test_the_ray_section_says_what_the_code_has():
    """The doc shows Ray as part of the topology while training modules import it (lazily) and the
    service never does; the `abeta` commands it runs on Ray name `--ray-address` (their options are
    checked against `--help` above) and the `ray start` options it uses exist."""
    text = DOC.read_text()
    uses_ray = {
        p.relative_to(ROOT).parts[0]
        for folder in ("models", "training", "serving", "src")
        for p in (ROOT / folder).rglob("*.py")
        if re.search(r"^\s*(import ray|from ray\b)", p.read_text(), re.M)
    }
    assert uses_ray == {"training"}, uses_ray
    assert "not yet" not in text and "ABETA_RAY_ADDRESS" in text
    on_ray = {c[0] for c in _abeta_commands() if "--ray-address" in c}
    assert on_ray == {"train", "tune"}, on_ray
    starts = [
        line.split()
        for tag, body in fenced_blocks(text)
        if tag == "bash"
        for line in shell_lines(body)
        if ".venv/bin/ray start" in line
    ]
    assert len(starts) == 1, starts
    words = starts[0][starts[0].index(".venv/bin/ray") + 2 :]
    opts = [w for w in words if w.startswith("--")]
    assert {"--head", "--num-cpus", "--port", "--block"} <= set(opts), opts
    res = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "start", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    for opt in opts:
        assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", res.stdout), (
            f"`ray start` has no option {opt}"
        )


def test_the_readme_links_the_topology():
    assert "(docs/topology.md)" in (ROOT / "README.md").read_text()
