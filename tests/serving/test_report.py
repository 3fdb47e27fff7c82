"""`abeta audit report`: one HTML file with inline PNG charts whose numbers match the seeded log."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from tests.serving.test_compliance_pages import seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    return seed(tmp_path_factory.mktemp("report"))


def _app():
    from adaptive_beta.cli.report import report

    app = typer.Typer()
    app.command()(report)
    return app


def test_report_renders_charts_sections_and_seeded_numbers(seeded, tmp_path):
    out = tmp_path / "r" / "report.html"
    res = CliRunner().invoke(
        _app(),
        ["--since", "2000-01-01", "--until", "2100-01-01", "--out", str(out), "--db", str(seeded["db"])],
    )
    assert res.exit_code == 0, res.output
    assert "6 records, chain ok" in res.output
    html = out.read_text()
    assert (
        len(
            re.findall(
                r'<img class="chart" alt="[^"]+" src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', html
            )
        )
        == 3
    )
    for heading in (
        "Requests per model version and endpoint",
        "Distribution of forecasts",
        "Distribution of group contributions",
        "Largest forecast changes",
        "Chain status",
        "Champion history",
    ):
        assert f">{heading}</h2>" in html
    rows = re.findall(r"<td>v([^<]+)</td><td>(/\w+)</td><td class=\"num\">(\d+)</td>", html)
    counts = {(v, e): int(n) for v, e, n in rows}
    assert counts == {("2", "/forecast"): 2, ("test-1", "/explain"): 1, ("test-1", "/forecast"): 3}
    assert "Intact: 6 records verified" in html
    assert "No registry information" in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # nothing fetched when the mail is opened


def test_report_largest_change_matches_the_seeded_forecasts(seeded):
    from adaptive_beta.models.audit.log import AuditReader
    from adaptive_beta.serving.compliance.report import build_report

    calls = seeded["calls"]
    with AuditReader(seeded["db"]) as reader:
        data = build_report(reader, verify=False)
    assert data.n_records == 6
    betas = {}  # (symbol, benchmark) -> forecasts in call order
    for c in calls:
        if "forecasts" in c:
            for f in c["forecasts"]:
                for b, v in f["betas"].items():
                    betas.setdefault((f["symbol"], b), []).append(v["beta"])
        else:
            for e in c["explanations"]:
                for b, v in e["benchmarks"].items():
                    betas.setdefault((e["symbol"], b), []).append(v["forecast"])
    diffs = [(k, b - a) for k, seq in betas.items() for a, b in zip(seq, seq[1:], strict=False)]
    k, d = max(diffs, key=lambda kd: abs(kd[1]))
    top = data.changes[0]
    assert (top["symbol"], top["benchmark"]) == k
    assert top["change"] == pytest.approx(d, abs=1e-6)
    assert len(data.changes) == min(10, len(diffs))
    assert sum(len(v) for v in data.forecasts.values()) == sum(len(s) for s in betas.values())
    # explain logs every group for 4 assets x 2 benchmarks; each forecast logs 3 drivers x 2 benchmarks
    assert sum(len(v) for v in data.contributions.values()) == 4 * 2 * 4 + 5 * 2 * 3


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--since", "yesterday", "--until", "2026-01-01"], "--since"),
        (["--since", "2026-01-01", "--until", "31/01/2026"], "--until"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "--since"),
    ],
)
def test_bad_dates_exit_2_naming_the_option(seeded, tmp_path, args, option):
    res = CliRunner().invoke(_app(), [*args, "--out", str(tmp_path / "x.html"), "--db", str(seeded["db"])])
    assert res.exit_code == 2
    assert option in res.output
    assert not (tmp_path / "x.html").exists()


def test_missing_database_exits_2(tmp_path):
    res = CliRunner().invoke(
        _app(),
        [
            "--since",
            "2026-01-01",
            "--until",
            "2026-02-01",
            "--db",
            str(tmp_path / "none.db"),
            "--out",
            str(tmp_path / "x.html"),
        ],
    )
    assert res.exit_code == 2 and "--db" in res.output


def test_report_command_is_a_plain_typer_function():
    from adaptive_beta.cli.report import report

    assert isinstance(_app(), typer.Typer) and report.__name__ == "report"
