"""Resumable, verified HTTP downloads for `abeta data fetch`.

One `Downloader` per run: a `requests` session whose urllib3 `Retry` retries 429 and 5xx
answers (and dropped connections) with exponential backoff, honouring `Retry-After`.  A file
is written to `NAME.part` and renamed when complete, so an interrupted run never leaves a
truncated file under the final name; the next run resumes the `.part` with an HTTP Range
request (or restarts it when the server ignores ranges).  Where the server publishes a
checksum (data.binance.vision's `NAME.CHECKSUM`: `<sha256>  NAME`), a complete file is verified
against it, kept only if it matches, and a file already present and matching is skipped
without downloading it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from adaptive_beta.models.data.schema import DataError

RETRY_STATUSES = (429, 500, 502, 503, 504)
CHUNK = 1 << 16


class NotFound(Exception):
    """The server has no such file (404): e.g. a month not published yet."""


@dataclass
class Outcome:
    """What happened to one file: for the per-file lines `abeta data fetch` prints."""

    path: Path
    status: str  # downloaded | resumed | skipped
    bytes: int
    verified: bool  # checked against a published checksum


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Downloader:
    """GET files with retries, resume and checksum verification (see the module docstring)."""

    def __init__(self, retries: int = 5, backoff: float = 0.5, timeout: float = 60.0):
        retry = Retry(
            total=retries,
            backoff_factor=backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.timeout = timeout

    def text(self, url: str) -> str:
        """A small text file (a checksum); NotFound on 404, DataError on other failures."""
        resp = self._get(url, {})
        with resp:
            return resp.text

    def file(self, url: str, dest: Path, checksum_url: str | None = None) -> Outcome:
        """Download `url` to `dest` unless already there (and matching its checksum)."""
        expected = self._expected_sha(checksum_url, dest.name) if checksum_url else None
        if dest.is_file() and (expected is None or sha256_of(dest) == expected):
            return Outcome(dest, "skipped", dest.stat().st_size, expected is not None)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        status = self._fetch(url, part)
        if expected is not None and sha256_of(part) != expected:
            part.unlink()  # a corrupt resume: restart once from zero
            status = self._fetch(url, part)
            got = sha256_of(part)
            if got != expected:
                part.unlink()
                raise DataError(
                    f"checksum mismatch: sha256 {got} but {checksum_url} says {expected}", file=url
                )
        part.replace(dest)
        return Outcome(dest, status, dest.stat().st_size, expected is not None)

    def _expected_sha(self, url: str, name: str) -> str | None:
        try:
            text = self.text(url).split()
        except NotFound:  # no checksum published: the file is kept unverified
            return None
        if not text or len(text[0]) != 64:
            raise DataError(f"checksum file is not '<sha256>  {name}'", file=url)
        return text[0].lower()

    def _fetch(self, url: str, part: Path) -> str:
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        resp = self._get(url, headers)
        with resp:
            if resp.status_code == 416:  # the part is already the whole file
                return "resumed"
            resumed = have > 0 and resp.status_code == 206
            with open(part, "ab" if resumed else "wb") as fh:
                for block in resp.iter_content(CHUNK):
                    fh.write(block)
        return "resumed" if resumed else "downloaded"

    def _get(self, url: str, headers: dict) -> requests.Response:
        try:
            resp = self.session.get(url, headers=headers, stream=True, timeout=self.timeout)
        except requests.RequestException as exc:
            raise DataError(f"download failed after retries: {exc}", file=url) from None
        if resp.status_code == 404:
            resp.close()
            raise NotFound(url)
        if resp.status_code >= 400 and resp.status_code != 416:
            resp.close()
            raise DataError(f"download failed: HTTP {resp.status_code} (after retries)", file=url)
        return resp
