"""Signed checkpoints ("anchors") of the audit chain head, kept outside the database.

A hash chain shows edits, deletions and reordering *inside* the log, but not its truncation or a
rewrite of its end by someone who recomputes every later hash. The writer therefore appends, every
`every_records` records or `every_seconds` seconds (whichever comes first, only when the head
moved), when it opens the log and when it closes it, one JSON line to an append-only anchor file::

    {"event":"interval","hash":"<head hash>","mac":"<hmac>","seq":1000,"time":"...Z","v":1,"writer":"pid-.."}

``mac = HMAC-SHA256(key, canonical JSON of the line without "mac")`` (canonical JSON as in
`chain.py`). The key lives in a file outside the database (setting ``ABETA_AUDIT_ANCHOR_KEY``;
when absent the writer generates 32 random bytes, hex, mode 0600, beside the database as
``DB.anchor-key``, with a warning). The anchor file defaults to ``DB.anchors`` beside a SQLite
database; a PostgreSQL log needs one named explicitly.

`check_anchors` compares the anchors with the stored chain and detects:

* truncation: the database ends before the highest anchored seq (first bad = first missing seq);
* a rewrite: the record at an anchored seq has another hash (first bad = the seq after the last
  anchor that still matches; the rewrite lies between the two anchors);
* records stored while the log was closed: a close anchor at seq S is followed by an open anchor,
  or by the end of the file, with a higher head (first bad = S + 1).  A writer that stops while
  other writers of the same PostgreSQL log (replicas) are still attached writes `leave` instead,
  which claims only its own head: the last writer out writes `close`;
* anchor lines whose MAC does not verify with the key (lines that are not JSON at all, as a
  write cut short by a crash leaves, claim nothing and are only warned about).

Records after the last anchor of a running log are not covered yet: a well-chained forged row
appended there cannot be told from a genuine one until the next anchor (see docs/audit.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptive_beta.models.audit.chain import GENESIS_HASH, canonical_json
from adaptive_beta.models.audit.store import Head, Store, open_store, sqlite_file

log_ = logging.getLogger(__name__)

FORMAT_VERSION = 1
ANCHORS_SUFFIX = ".anchors"
KEY_SUFFIX = ".anchor-key"
EVENTS = ("open", "interval", "close", "leave")  # leave: this writer stopped, other replicas append on
_FIELDS = ("v", "seq", "hash", "time", "event", "writer")
MIN_KEY_BYTES = 32


class AnchorError(ValueError):
    """The anchor key or file cannot be used (missing key, short key, no anchor file for PostgreSQL)."""


@dataclass(frozen=True)
class AnchorSettings:
    """Where anchors go and how often: `file`/`key_file` None mean the defaults beside the database."""

    file: str | os.PathLike[str] | None = None
    key_file: str | os.PathLike[str] | None = None
    every_records: int = 1000
    every_seconds: float = 60.0


@dataclass(frozen=True)
class Anchor:
    """One verified anchor line; `line` is its 1-based line number in the file."""

    seq: int
    hash: str
    time: str
    event: str
    writer: str
    line: int

    def where(self) -> str:
        return f"anchor line {self.line} ({self.event}, {self.time})"


@dataclass(frozen=True)
class AnchorRead:
    """The anchor file as read: valid anchors in file order, signed-looking lines that do not verify
    (`bad`: tampering or another key) and lines that are not JSON at all (`torn`: a write cut by a
    crash; they claim nothing, so they are only warned about)."""

    path: Path
    anchors: list[Anchor]
    bad: list[tuple[int, str]] = field(default_factory=list)
    torn: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class AnchorCheck:
    """Outcome of `check_anchors`; kind: truncated | rewritten | appended-while-closed | bad-anchor."""

    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None
    kind: str | None = None
    n_anchors: int = 0
    last: Anchor | None = None
    unanchored: tuple[int, int] | None = None  # seq range stored after the highest anchor


# ------------------------------------------------------------------------------ locations


def has_default_anchor_file(db_url: str | os.PathLike[str]) -> bool:
    """True for SQLite (anchors go beside the file by default); a PostgreSQL log must name one."""
    return sqlite_file(db_url) is not None


def default_paths(
    db_url: str | os.PathLike[str],
    anchor_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """(anchor file, key file): given ones, else ``DB.anchors`` / ``DB.anchor-key`` beside a SQLite
    database. For PostgreSQL the anchor file must be given and the key defaults beside it.

    Raises AnchorError when no anchor file can be chosen.
    """
    db_file = sqlite_file(db_url)
    if anchor_file is None:
        if db_file is None:
            raise AnchorError(
                "a PostgreSQL audit log has no file to put anchors beside: name an anchor file "
                "(ABETA_AUDIT_ANCHORS, --anchor-file or --anchors)"
            )
        anchor_file = f"{db_file}{ANCHORS_SUFFIX}"
    anchors = Path(anchor_file).expanduser().absolute()
    if key_file is None:
        base = db_file if db_file is not None else anchors.with_suffix("")
        key_file = f"{base}{KEY_SUFFIX}"
    return anchors, Path(key_file).expanduser().absolute()


def load_key(path: Path, create: bool = False) -> bytes:
    """The HMAC key in `path` (hex, at least 32 bytes). With `create`, a missing key is generated
    (mode 0600, atomically: concurrent workers end up with the same key) and a warning logged."""
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, (secrets.token_hex(MIN_KEY_BYTES) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another process wrote first
            log_.warning(
                "audit anchor key %s did not exist: generated a new one (mode 0600); keep a copy "
                "away from the database and set ABETA_AUDIT_ANCHOR_KEY to a path outside it",
                path,
            )
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise AnchorError(f"audit anchor key {path} does not exist (ABETA_AUDIT_ANCHOR_KEY, --key)") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode()
    if len(key) < MIN_KEY_BYTES:
        raise AnchorError(f"audit anchor key {path} is shorter than {MIN_KEY_BYTES} bytes")
    return key


# ------------------------------------------------------------------------------ lines


def _mac(key: bytes, doc: dict[str, Any]) -> str:
    body = {k: doc[k] for k in _FIELDS}
    return hmac.new(key, canonical_json(body).encode("utf-8"), hashlib.sha256).hexdigest()


def anchor_line(key: bytes, head: Head | None, event: str, writer: str, now: str) -> str:
    """The signed JSON line (with newline) anchoring `head` (None: the empty log, seq 0)."""
    if event not in EVENTS:
        raise ValueError(f"anchor event {event!r} is not one of {EVENTS}")
    doc: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "seq": head.seq if head else 0,
        "hash": head.hash if head else GENESIS_HASH,
        "time": now,
        "event": event,
        "writer": writer,
    }
    doc["mac"] = _mac(key, doc)
    return canonical_json(doc) + "\n"


_NOT_JSON = "not JSON"


def _parse(key: bytes, text: str, line: int) -> Anchor | str:
    """An Anchor, or the reason the line is not one."""
    try:
        doc = json.loads(text)
    except ValueError:
        return _NOT_JSON
    if not isinstance(doc, dict) or any(k not in doc for k in (*_FIELDS, "mac")):
        return f"not an anchor (needs {', '.join((*_FIELDS, 'mac'))})"
    try:
        good = hmac.compare_digest(str(doc["mac"]), _mac(key, doc))
    except (TypeError, ValueError):
        good = False
    if not good:
        return "bad signature (forged, altered or written with another key)"
    if not isinstance(doc["seq"], int) or doc["event"] not in EVENTS:
        return "signed but malformed"
    return Anchor(doc["seq"], str(doc["hash"]), str(doc["time"]), doc["event"], str(doc["writer"]), line)


def read_anchors(path: Path, key: bytes) -> AnchorRead:
    """Every line of the anchor file, checked against the key. A missing file reads as empty."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return AnchorRead(path, [])
    out = AnchorRead(path, [])
    for i, text in enumerate(data.decode("utf-8", errors="replace").split("\n"), start=1):
        if not text.strip():
            continue
        got = _parse(key, text, i)
        if isinstance(got, Anchor):
            out.anchors.append(got)
        elif got == _NOT_JSON:
            out.torn.append(i)
        else:
            out.bad.append((i, got))
    return out


# ------------------------------------------------------------------------------ checking


def _check_positions(store: Store, anchors: list[Anchor], head: Head | None) -> AnchorCheck | None:
    """Truncation or rewrite: every anchored (seq, hash) must be stored. Lowest seq first."""
    head_seq = head.seq if head else 0
    last_good = 0
    for a in sorted(anchors, key=lambda x: x.seq):
        if a.seq == 0:
            continue
        if a.seq > head_seq:
            first = head_seq + 1
            span = f"seq {first}" if first == a.seq else f"seq {first}..{a.seq}"
            return AnchorCheck(
                False,
                first,
                f"truncated: the log ends at seq {head_seq} but {a.where()} records seq {a.seq}: "
                f"record {span} removed",
                "truncated",
            )
        rec = store.record_at(a.seq)
        if rec is None or rec["hash"] != a.hash:
            first = last_good + 1
            what = "is missing" if rec is None else "has another hash"
            return AnchorCheck(
                False,
                first,
                f"rewritten: record seq {a.seq} {what} than {a.where()} ({a.hash[:16]}..); "
                f"records after seq {last_good} (the last matching anchor) up to seq {a.seq} were "
                f"replaced, first possibly bad record seq {first}",
                "rewritten",
            )
        last_good = a.seq
    return None


def _appended_while_closed(closed_at: int, seq: int, after: str) -> AnchorCheck:
    span = f"seq {closed_at + 1}" if seq == closed_at + 1 else f"seq {closed_at + 1}..{seq}"
    return AnchorCheck(
        False,
        closed_at + 1,
        f"appended while closed: record {span} stored {after} the log was closed at seq {closed_at} "
        f"(forged, or written by a worker that crashed without anchoring)",
        "appended-while-closed",
    )


def _check_closed(anchors: list[Anchor], head: Head | None) -> AnchorCheck | None:
    """No record may appear between a close anchor and the next open anchor (in file order)."""
    highest, prev_event = 0, None
    for a in anchors:
        if a.event == "open" and prev_event == "close" and a.seq > highest:
            return _appended_while_closed(highest, a.seq, f"before {a.where()}, after")
        highest, prev_event = max(highest, a.seq), a.event
    head_seq = head.seq if head else 0
    if prev_event == "close" and head_seq > highest:
        return _appended_while_closed(highest, head_seq, "after")
    return None


def check_anchors(store: Store, read: AnchorRead, head: Head | None = None) -> AnchorCheck:
    """Compare the anchor file with the stored chain (see module docstring); `head` defaults to
    the store's head. The chain itself is checked by `log.verify_chain`."""
    head = store.head() if head is None else head
    n = len(read.anchors)
    if read.bad:
        line, reason = read.bad[0]
        more = f" (and {len(read.bad) - 1} more lines)" if len(read.bad) > 1 else ""
        problem = f"anchor file {read.path} line {line}: {reason}{more}"
        return AnchorCheck(False, None, problem, "bad-anchor", n)
    found = _check_positions(store, read.anchors, head) or _check_closed(read.anchors, head)
    if found is not None:
        return AnchorCheck(found.ok, found.first_bad_seq, found.problem, found.kind, n)
    last = max(read.anchors, key=lambda a: a.seq, default=None)
    top, head_seq = (last.seq if last else 0), (head.seq if head else 0)
    unanchored = (top + 1, head_seq) if head_seq > top else None
    return AnchorCheck(True, None, None, None, n, last, unanchored)


# ------------------------------------------------------------------------------ writing


class Anchorer:
    """Writes the anchors of one AuditLog (its writer thread calls `after_commit` and `tick`)."""

    def __init__(self, path: Path, key: bytes, every_records: int, every_seconds: float):
        self.path, self.key = path, key
        self.every_records = max(1, int(every_records))
        self.every_seconds = max(0.001, float(every_seconds))
        self.writer = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.last_seq = -1
        self.last_time = time.monotonic()

    def write(self, head: Head | None, event: str, now: str) -> None:
        """Append one signed line (O_APPEND, one write, fsync) and log it."""
        line = anchor_line(self.key, head, event, self.writer, now)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a torn line left by a crash
                line = "\n" + line
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        self.last_seq = head.seq if head else 0
        self.last_time = time.monotonic()
        log_.info("audit anchor %s", line.strip())

    def due(self, head: Head | None) -> bool:
        if head is None or head.seq <= self.last_seq:
            return False
        elapsed = time.monotonic() - self.last_time
        return head.seq - self.last_seq >= self.every_records or elapsed >= self.every_seconds

    def wait_s(self, head: Head | None) -> float | None:
        """How long the writer may block before an interval anchor is due (None: nothing to anchor)."""
        if head is None or head.seq <= self.last_seq:
            return None
        return max(0.0, self.every_seconds - (time.monotonic() - self.last_time))


def verify_anchors(
    db_url: str | os.PathLike[str],
    anchor_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
) -> AnchorCheck | None:
    """Check an existing database against its anchor file (read-only; never creates anything).

    Returns None when the anchor file does not exist. Raises AnchorError (no usable key or no
    anchor file for PostgreSQL) and StoreMissing (no database).
    """
    path, key_path = default_paths(db_url, anchor_file, key_file)
    if not path.exists():
        return None
    read = read_anchors(path, load_key(key_path))
    store = open_store(db_url, create=False)
    try:
        return check_anchors(store, read)
    finally:
        store.close()
