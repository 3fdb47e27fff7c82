"""`CanonicalText`: a payload given as its canonical JSON text hashes, stores and verifies exactly
as the same payload given as a value (models/audit/chain.py, log.py; a real SQLite log)."""

from __future__ import annotations

import json

import pytest

from adaptive_beta.models.audit.chain import (
    CanonicalText,
    canonical_array,
    canonical_json,
    canonical_object,
    record_hash,
)
from adaptive_beta.models.audit.log import AuditLog, verify_chain

PAYLOAD = {
    "explanation": {"SOLUSDT": {"CRYPTO_EW": [{"contribution": -0.25, "group": "ü"}]}},
    "features": {"as_of": {"SOLUSDT": "2026-01-01T00:00:00+00:00"}, "bars": {"n": 3}},
    "output": {"forecasts": [{"beta": 1e-7, "lo": 0.1, "hi": 1e16}]},
}


def test_spliced_texts_equal_the_canonical_json_of_the_value():
    spliced = canonical_object(
        {
            "output": canonical_object(
                {"forecasts": canonical_array([canonical_json(PAYLOAD["output"]["forecasts"][0])])}
            ),
            "features": canonical_json(PAYLOAD["features"]),
            "explanation": canonical_json(PAYLOAD["explanation"]),
        }
    )
    assert spliced == canonical_json(PAYLOAD)
    assert canonical_json(spliced) is spliced  # used as is, not quoted as a string
    record = {"seq": 1, "ts": "t", "request_id": "r", "payload": spliced, "prev_hash": "0" * 64}
    record.update({k: None for k in ("caller", "endpoint", "model_name", "model_version", "bundle_sha256")})
    record.update({k: None for k in ("run_id", "feature_spec_hash", "input_sha256")}, symbols=["A"])
    assert record_hash(record) == record_hash({**record, "payload": PAYLOAD})


def test_a_prepared_payload_is_stored_verbatim_and_the_chain_verifies(tmp_path):
    db = tmp_path / "audit.db"
    with AuditLog(db) as log:
        a = log.append({"request_id": "a", "symbols": ["SOLUSDT"], **PAYLOAD})
        b = log.append(
            {"request_id": "b", "symbols": ["SOLUSDT"], "payload": CanonicalText(canonical_json(PAYLOAD))}
        )
        assert b["prev_hash"] == a["hash"] and b["features"] is None
        got = log.get("b")
        assert {k: got[k] for k in PAYLOAD} == json.loads(json.dumps(PAYLOAD))
        assert {k: log.get("a")[k] for k in PAYLOAD} == {k: got[k] for k in PAYLOAD}
    assert verify_chain(db).ok


def test_a_plain_string_payload_is_not_taken_as_prepared(tmp_path):
    with (
        AuditLog(tmp_path / "audit.db") as log,
        pytest.raises(ValueError, match="unknown fields \\['payload'\\]"),
    ):
        log.append({"request_id": "c", "symbols": [], "payload": canonical_json(PAYLOAD)})


def test_payload_text_stores_what_a_plain_entry_stores(tmp_path):
    """`payload_text` (the stateless /forecast's prepared payload) applies the entry's JSON rules:
    numpy values, non-finite floats and absent fields come out as the writer would store them."""
    import sqlite3

    import numpy as np

    from adaptive_beta.models.audit.chain import payload_text
    from adaptive_beta.models.audit.store import TABLE

    fields = {
        "features": {"rows": {"A": {"f": np.float64(0.5), "g": float("nan"), "h": np.inf}}},
        "output": {"beta": np.array([1.25, -0.5], dtype=np.float32)},
    }  # no explanation: stored as null
    db = tmp_path / "audit.db"
    with AuditLog(db) as log:
        log.append({"request_id": "plain", "symbols": ["A"], **fields})
        log.append({"request_id": "prepared", "symbols": ["A"], "payload": payload_text(fields)})
    with sqlite3.connect(db) as conn:
        rows = dict(conn.execute(f"SELECT request_id, payload FROM {TABLE}").fetchall())
    assert rows["prepared"] == rows["plain"]
    assert json.loads(rows["plain"])["features"]["rows"]["A"] == {"f": 0.5, "g": "NaN", "h": "Infinity"}
    assert json.loads(rows["plain"])["explanation"] is None
    assert verify_chain(db).ok
