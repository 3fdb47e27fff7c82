"""The audit log's hash chain: canonical JSON, record hashes and tamper classification.

Pure functions, no database: an independent verifier (a compliance script, another language)
only needs the rules written here to re-check an export.

Canonical form of a record (what is hashed): a JSON object holding every stored column except
`hash` -- ``seq, ts, request_id, caller, endpoint, symbols, model_name, model_version,
bundle_sha256, run_id, feature_spec_hash, input_sha256, payload, prev_hash`` -- serialised with
keys sorted, separators ``,`` and ``:`` (no whitespace), UTF-8 (non-ASCII kept as is), integers
as integers and floats as Python ``repr`` (the shortest string that round-trips the IEEE double,
e.g. ``0.1``, ``1e-07``, ``1e+16``). Non-finite floats are not JSON; they are stored as the
strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` before hashing.
``hash = sha256(canonical).hexdigest()``; the first record's ``prev_hash`` is 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

GENESIS_HASH = "0" * 64

# Stored columns in table order. `payload` holds {"features", "output", "explanation"}.
COLUMNS: tuple[str, ...] = (
    "seq",
    "ts",
    "request_id",
    "caller",
    "endpoint",
    "symbols",
    "model_name",
    "model_version",
    "bundle_sha256",
    "run_id",
    "feature_spec_hash",
    "input_sha256",
    "payload",
    "prev_hash",
    "hash",
)
TEXT_FIELDS: tuple[str, ...] = (
    "caller",
    "endpoint",
    "model_name",
    "model_version",
    "bundle_sha256",
    "run_id",
    "feature_spec_hash",
    "input_sha256",
)
PAYLOAD_FIELDS: tuple[str, ...] = ("features", "output", "explanation")
ENTRY_FIELDS: frozenset[str] = frozenset(("request_id", "symbols", *TEXT_FIELDS, *PAYLOAD_FIELDS))

_NONFINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


class _NoJsonForm(Exception):
    """A value `_plain` cannot convert: `to_json_value` walks again to name its path."""


def to_json_value(obj: Any, where: str = "entry") -> Any:
    """Plain JSON value for `obj`: numpy scalars/arrays, tuples, timestamps become JSON types.

    Done once, before hashing, so the stored text and the hashed text are the same thing.
    Raises TypeError naming the field path for anything that has no JSON form.  The conversion
    runs without building field paths (`_plain`, the same values: a 200-asset stored-state record
    holds ~40,000 numbers); only a value without a JSON form is looked up again, with its path.
    """
    try:
        return _plain(obj)
    except _NoJsonForm:
        return _with_paths(obj, where)


def _plain(obj: Any) -> Any:
    """`_with_paths` without the paths: exact builtin types first (the common case), then the
    same rules in the same order; `_NoJsonForm` for anything else."""
    t = type(obj)
    if t is float:
        return "NaN" if obj != obj else _NONFINITE.get(obj, obj)
    if t is str or t is bool or t is int or obj is None:
        return obj
    if t is dict:
        return {str(k): _plain(v) for k, v in obj.items()}
    if t is list or t is tuple:
        return [_plain(v) for v in obj]
    if isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return "NaN" if math.isnan(obj) else _NONFINITE.get(obj, float(obj))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _plain(obj.tolist())
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise _NoJsonForm


def _with_paths(obj: Any, where: str) -> Any:
    """The reference conversion, naming the field path of a value without a JSON form."""
    if obj is None or isinstance(obj, bool | str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "NaN"
        return _NONFINITE.get(obj, float(obj))
    if isinstance(obj, Mapping):
        return {str(k): _with_paths(v, f"{where}.{k}") for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_with_paths(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if hasattr(obj, "tolist"):  # numpy arrays and numpy scalars (without importing numpy)
        return _with_paths(obj.tolist(), where)
    if hasattr(obj, "isoformat"):  # datetime, pandas Timestamp
        return obj.isoformat()
    raise TypeError(f"audit {where}: value of type {type(obj).__name__} cannot be stored as JSON")


class CanonicalText(str):
    """The canonical JSON text of a value, made once (`canonical_json` of a plain value, or
    `canonical_object` / `canonical_array` of such texts).

    Why: a stored-state `{"universe": true}` record is assembled from per-asset fragments that
    were serialised when their bar arrived; carrying the text instead of the value lets the size
    check, the hash and the database row use it as is instead of re-serialising the record three
    times.  `canonical_json` returns it unchanged (as a value, not as a JSON string), so the hash
    of a record holding one is the hash of the same record holding the parsed value: the chain
    rules above are unchanged and `abeta audit verify` re-checks it from the stored text.
    """

    __slots__ = ()


def canonical_json(obj: Any) -> str:
    """Canonical JSON text (see module docstring) of an already plain JSON value; a
    `CanonicalText` (at the top or as a value of a top-level object) is spliced in as is."""
    if type(obj) is CanonicalText:
        return obj
    if type(obj) is dict and any(type(v) is CanonicalText for v in obj.values()):
        return canonical_object({str(k): canonical_json(v) for k, v in obj.items()})
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def plain_payload(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The stored payload of an entry: its `PAYLOAD_FIELDS` as plain JSON values (absent: null)."""
    return {k: to_json_value(fields.get(k), f"entry.{k}") for k in PAYLOAD_FIELDS}


def payload_text(fields: Mapping[str, Any]) -> CanonicalText:
    """`plain_payload` as its canonical text, for an entry appended with a prepared payload: the
    caller measures it for the size limit and the writer hashes and stores it as it is (one
    serialisation per record instead of three: size check, hash, database row)."""
    return CanonicalText(canonical_json(plain_payload(fields)))


def canonical_object(items: Mapping[str, str]) -> CanonicalText:
    """The canonical text of the object {key: value} whose values are given as canonical texts
    (keys sorted as `json.dumps(sort_keys=True)` sorts them)."""
    parts = [_key(k) + v for k, v in sorted(items.items())]
    return CanonicalText("{" + ",".join(parts) + "}")


def canonical_array(texts: list[str]) -> CanonicalText:
    """The canonical text of the array of values given as canonical texts (order kept)."""
    return CanonicalText("[" + ",".join(texts) + "]")


def _key(k: str) -> str:
    return json.dumps(k, ensure_ascii=False) + ":"


def record_hash(record: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of a stored record without its `hash` field.

    `record` is the stored form: `symbols` a list, `payload` an object.
    """
    doc = {k: record[k] for k in COLUMNS if k != "hash"}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def describe(record: Mapping[str, Any]) -> str:
    """Short human label of a record for messages: ``record seq 17 (request 9f3a..)``."""
    rid = str(record.get("request_id") or "")
    short = rid if len(rid) <= 12 else rid[:10] + ".."
    return f"record seq {record['seq']} (request {short})"
