"""`abeta audit verify` and `abeta audit export`: output and exit codes."""

from __future__ import annotations

import json
import sqlite3

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from adaptive_beta.cli.main import app
from adaptive_beta.models.audit.log import AuditLog, verify_chain

runner = CliRunner()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "audit.db"
    with AuditLog(path) as log:
        for i in range(1, 13):
            log.append({"request_id": f"r{i:03d}", "symbols": ["BTCUSDT"], "output": {"beta": i / 10}})
    return path


def test_verify_prints_ok_with_count_and_head_and_exits_0(db):
    head = verify_chain(db).head_hash
    res = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0] == f"OK: 12 records, chain intact, head {head}"
    assert (
        f"warning: no anchor file {db}.anchors: truncation and rewrites of the end cannot be detected"
        in res.output
    )


def test_verify_reads_the_database_from_the_environment(db, monkeypatch):
    monkeypatch.setenv("ABETA_AUDIT_DB", f"sqlite:///{db}")
    res = runner.invoke(app, ["audit", "verify"])
    assert res.exit_code == 0 and res.output.startswith("OK: 12 records")


def test_verify_prints_the_first_problem_and_exits_1(db):
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("DROP TRIGGER audit_records_no_update")
    conn.execute("UPDATE audit_records SET caller = 'someone' WHERE seq = 7")
    conn.close()
    res = runner.invoke(app, ["audit", "verify", "--db", str(db)])
    assert res.exit_code == 1
    assert "FAILED: record seq 7 (request r007): content modified" in res.output
    assert "(12 records stored)" in res.output


def test_verify_of_a_missing_database_exits_2_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "audit.db"
    res = runner.invoke(app, ["audit", "verify", "--db", str(missing)])
    assert res.exit_code == 2
    assert f"audit database {missing} does not exist" in res.output
    assert not missing.parent.exists()


def test_export_writes_the_requested_format_and_range(db, tmp_path):
    with AuditLog(db) as log:
        ts = [r["ts"] for r in log.query(limit=100)][::-1]
    out = tmp_path / "exp" / "part.parquet"
    res = runner.invoke(
        app,
        [
            "audit",
            "export",
            "--db",
            str(db),
            "--since",
            ts[2],
            "--until",
            ts[9],
            "--format",
            "parquet",
            "--out",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.output.strip() == f"wrote 7 records to {out}"
    assert pq.read_table(out).column("seq").to_pylist() == list(range(3, 10))

    out2 = tmp_path / "all.jsonl"
    res = runner.invoke(app, ["audit", "export", "--db", str(db), "--out", str(out2)])  # default jsonl
    assert res.exit_code == 0
    lines = [json.loads(x) for x in out2.read_text().splitlines()]
    assert len(lines) == 12 and lines[11]["payload"]["output"] == {"beta": 1.2}

    out3 = tmp_path / "none.csv"
    res = runner.invoke(
        app,
        ["audit", "export", "--db", str(db), "--since", "2999-01-01", "--format", "csv", "--out", str(out3)],
    )
    assert res.exit_code == 0 and out3.read_text().startswith("seq,ts,request_id,")
    assert len(out3.read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--since", "yesterday"], "--since"),
        (["--until", "2026-02-30"], "--until"),
        (["--format", "xlsx"], "--format"),
    ],
)
def test_export_with_a_bad_option_exits_2_naming_it(db, tmp_path, args, option):
    out = tmp_path / "x.out"
    res = runner.invoke(app, ["audit", "export", "--db", str(db), "--out", str(out), *args])
    assert res.exit_code == 2
    assert option in res.output
    assert not out.exists()


def test_export_of_a_missing_database_exits_2(tmp_path):
    res = runner.invoke(
        app, ["audit", "export", "--db", str(tmp_path / "no.db"), "--out", str(tmp_path / "x.jsonl")]
    )
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "no.db").exists()
