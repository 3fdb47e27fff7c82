"""The README's commands work as written on a fresh clone (issue 13, "Done when").

The rule, so that a command added to the README is either run here or skipped for a stated reason:

- Fenced blocks tagged `bash`/`sh`/`console` or `python` are code; an untagged block (the data-flow
  diagram) is not.  Blocks run in README order in one working folder: a copy of the repository's
  tracked files (what `git clone` gives) with `.venv` linked to this interpreter's environment
  (what `scripts/setup.sh` gives; its editable install imports this checkout's package), so a
  later block can read what an earlier one wrote.
- A shell block runs line by line (`bash -c`, trailing `# comments` dropped); a line must exit 0
  unless it is in `SKIPPED` below with its reason (a server, minutes of training, the network or
  the whole suite).  A `python` block runs with `.venv/bin/python`.
- Every inline `abeta ...` command (in backticks: the command table, "Reproduce:" lines) names a
  command that exists, and each `--option` it spells is in that command's `--help`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

SKIPPED = {
    "bash scripts/setup.sh && .venv/bin/abeta run": (
        "setup installs from the package registry (done: this venv); `abeta run` trains for minutes "
        "and serves over HTTP"
    ),
    "bash scripts/test.sh": "the whole suite, which runs this test",
    "abeta train --data docs/datasets/binance-perps-8h.toml --scorecard-out real.json": (
        "about 15 minutes of training on the real data, which lives outside the clone"
    ),
    "abeta backtest --data docs/datasets/binance-perps-8h.toml --forecasts real.predictions.parquet --out bt": (
        "needs the predictions the skipped real-data training writes"
    ),
}
SHELL_TAGS = {"bash", "sh", "console", "shell"}


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(tag, body) of every fenced block, in order; tag is '' for an untagged block."""
    return [
        (m.group(1).strip(), m.group(2)) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, re.S | re.M)
    ]


def shell_lines(body: str) -> list[str]:
    """Commands of a shell block: one per line, trailing `  # comment` removed."""
    out = []
    for line in body.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def inline_abeta_commands(text: str) -> list[str]:
    """Inline code spans that start with `abeta ` (table cells unescaped: `\\|` -> `|`)."""
    spans = re.findall(r"(?<!`)`(abeta [^`\n]+)`(?!`)", text)
    return [s.replace("\\|", "|") for s in spans]


def test_the_rule_finds_the_readme_blocks_and_every_skip_is_still_in_it():
    blocks = fenced_blocks(README.read_text())
    code = [(t, b) for t, b in blocks if t in SHELL_TAGS or t == "python"]
    lines = [line for t, b in code if t in SHELL_TAGS for line in shell_lines(b)]
    assert set(SKIPPED) <= set(lines), f"stale SKIPPED entries: {set(SKIPPED) - set(lines)}"
    runnable = [line for line in lines if line not in SKIPPED]
    assert len(runnable) >= 4 and any(t == "python" for t, _ in code)
    assert [t for t, _ in blocks if t not in SHELL_TAGS | {"python"}] == [""]  # only the diagram
    assert shell_lines("abeta x --out y   # writes y\n\n# a note\nls") == ["abeta x --out y", "ls"]


def _fresh_clone(dest: Path) -> Path:
    """The tracked files of the working tree (as a clone has them) plus `.venv` -> this environment."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(Path(sys.prefix))
    return dest


@pytest.mark.slow
def test_readme_code_blocks_run_as_written_in_a_fresh_clone(tmp_path):
    clone = _fresh_clone(tmp_path / "clone")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ran, skipped = [], []
    for k, (tag, body) in enumerate(fenced_blocks((clone / "README.md").read_text())):
        if tag == "python":
            script = tmp_path / f"block{k}.py"
            script.write_text(body)
            cmds = [([str(clone / ".venv" / "bin" / "python"), str(script)], f"python block {k}")]
        elif tag in SHELL_TAGS:
            cmds = [(["bash", "-c", line], line) for line in shell_lines(body) if line not in SKIPPED]
            skipped += [line for line in shell_lines(body) if line in SKIPPED]
        else:
            continue
        for argv, label in cmds:
            res = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, f"README `{label}` exited {res.returncode}:\n{res.stderr[-3000:]}"
            ran.append((label, res.stdout))
    assert len(ran) >= 5 and sorted(skipped) == sorted(SKIPPED)
    out = dict(ran)
    # what the commands are for: a dataset, a scorecard of every baseline, a backtest, the API's tables
    assert (clone / "sim" / "dataset.toml").is_file() and (clone / "baselines.json").is_file()
    assert (clone / "bt" / "summary.json").is_file()
    python_out = next(v for label, v in ran if label.startswith("python block"))
    assert re.search(r"ETHUSDT\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+799", python_out)  # beta, se, t, 799 returns
    assert "ratios vs the rolling-OLS 30d overlay" in python_out
    assert "ok:" in out[".venv/bin/abeta data validate sim"]


@pytest.mark.slow
def test_bench_service_help_runs_in_a_fresh_clone_without_the_tests_folder(tmp_path):
    """The README's `python benchmarks/bench_service.py` once needed `tests/` (ModuleNotFoundError):
    with the folder gone from the clone, an import of it anywhere on the path would fail here."""
    clone = _fresh_clone(tmp_path / "clone")
    shutil.rmtree(clone / "tests")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run(
        [str(clone / ".venv" / "bin" / "python"), "benchmarks/bench_service.py", "--help"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage: bench_service.py" in res.stdout


def test_every_inline_abeta_command_exists_with_the_options_it_spells():
    from typer.testing import CliRunner

    from adaptive_beta.cli.main import app

    runner = CliRunner()
    commands = inline_abeta_commands(README.read_text())
    assert len(commands) >= 20
    helps: dict[tuple[str, ...], str] = {}
    for cmd in commands:
        words = cmd.split()[1:]
        path = []
        for w in words:
            if not re.fullmatch(r"[a-z][a-z-]*", w):
                break
            path.append(w)
        key = tuple(path)
        if key not in helps:
            res = runner.invoke(app, [*path, "--help"], terminal_width=200)
            assert res.exit_code == 0, f"README `{cmd}`: `abeta {' '.join(path)}` is not a command"
            helps[key] = res.output
        for opt in re.findall(r"(?<![\w-])--[a-z][a-z-]*", cmd):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", helps[key]), (
                f"README `{cmd}`: `abeta {' '.join(path)}` has no option {opt}"
            )
