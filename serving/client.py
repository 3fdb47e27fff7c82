"""A small client for the prediction service: start/stop a local server, and build valid
requests from a dataset using only what `GET /model` says it needs.

Used by the main job (`abeta run`), the service benchmark and the tests, so a request is
built one way everywhere.  Torch-free.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from adaptive_beta.models.data.schema import DataError, Panel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Linux /proc), parents first."""
    out, frontier = [pid], [pid]
    while frontier:
        p = frontier.pop()
        try:
            kids = [int(k) for k in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        frontier += kids
    return out


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (Linux /proc; a gone one counts 0).

    The benchmarks' per-request server cost: a loaded machine inflates wall latency, much less the
    CPU a request takes (`process_tree(service_pid)` for a service and its workers)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total / os.sysconf("SC_CLK_TCK")


class LocalService:
    """`bentoml serve adaptive_beta.serving.service:AdaptiveBeta` on 127.0.0.1 in a subprocess (context manager)."""

    def __init__(
        self,
        model: str,
        audit_db: str | Path,
        log: str | Path,
        port: int | None = None,
        extra_env: dict | None = None,
        service: str = "adaptive_beta.serving.service:AdaptiveBeta",
    ):
        self.service = service
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.trader_key = "trader-" + secrets.token_hex(16)
        self.compliance_key = "compliance-" + secrets.token_hex(16)
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        Path(audit_db).parent.mkdir(parents=True, exist_ok=True) if "://" not in str(audit_db) else None
        self.env = dict(os.environ)
        self.env.update(
            {
                "ABETA_MODEL": str(model),
                "ABETA_AUDIT_DB": str(audit_db),
                "ABETA_API_KEYS": f"main@trader:{self.trader_key},review@compliance:{self.compliance_key}",
                "BENTOML_DO_NOT_TRACK": "true",
                **(extra_env or {}),
            }
        )
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> LocalService:
        import httpx

        cmd = [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            self.service,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.proc = subprocess.Popen(
            cmd,
            env=self.env,
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,  # noqa: SIM115
            start_new_session=True,
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"service exited during start-up; log {self.log}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"service not ready in {timeout:.0f}s; log {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            pids = process_tree(self.proc.pid)  # BentoML workers run in their own sessions
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in pids:
                    try:
                        os.killpg(os.getpgid(pid), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                self.proc.wait(5)

    def headers(self, role: str = "trader") -> dict[str, str]:
        key = self.trader_key if role == "trader" else self.compliance_key
        return {"Authorization": f"Bearer {key}"}

    def __enter__(self) -> LocalService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


async def bounded_load(url: str, payload: bytes, headers: dict, clients: int, total: int, cap_s: float):
    """`clients` concurrent loops POST `payload` to `url`, sharing `total` requests and stopping at
    `cap_s` seconds; (latencies of the 200s, errors, wall seconds).  The load of the service
    benchmarks (bounded in count and time, one connection per client, kept alive)."""
    import asyncio

    import httpx

    lat: list[float] = []
    errors = 0
    left = total
    deadline = time.perf_counter() + cap_s
    hdrs = {**headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await client.post(url, content=payload, headers=hdrs)  # connection warm

        async def one() -> None:
            nonlocal left, errors
            while left > 0 and time.perf_counter() < deadline:
                left -= 1
                t = time.perf_counter()
                try:
                    ok = (await client.post(url, content=payload, headers=hdrs)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    lat.append(time.perf_counter() - t)
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[one() for _ in range(clients)])
        wall = time.perf_counter() - t0
    return lat, errors, wall


def raw_factor_series(data: str | Path) -> dict[str, pd.Series]:
    """Factor values as observed (date -> close, UTC; the loader's readers and transforms) of a
    dataset folder or manifest: what a client sends; the service publishes them by the model's rule."""
    from adaptive_beta.models.data.loaders import factor_observations

    return {name: fs.values for name, fs in factor_observations(data).items()}


def forecast_request(
    panel: Panel,
    required: dict,
    symbols: list[str],
    raw_factors: dict[str, pd.Series] | None = None,
    end: pd.Timestamp | None = None,
    extra_periods: int = 0,
) -> dict:
    """A /forecast body with exactly the history `required` (`GET /model`'s required_history) asks for.

    The history is `adaptive_beta.models.bundle.panel_frame.panel_frame_from_panel`'s (the same
    rows an MLflow or `adaptive_beta.load_model` user passes as a panel frame), written as JSON:
    `symbols` as assets, every required series as `series`, daily factor closes as dates.
    """
    from adaptive_beta.models.bundle.panel_frame import panel_frame_from_panel

    series = set(required.get("series", []))
    as_series = [s for s in symbols if s in series]  # e.g. BTCUSDT: an input AND an asset to forecast
    frame = panel_frame_from_panel(
        panel, required, [s for s in symbols if s not in series], raw_factors, end, extra_periods
    )
    body: dict = {"assets": [], "series": {}}
    for sym, rows in frame.groupby("symbol", sort=False):
        stamps = pd.DatetimeIndex(rows["timestamp"]).tz_localize("UTC")
        if sym in series:
            dates = (
                raw_factors is not None and sym in raw_factors and bool((stamps == stamps.normalize()).all())
            )
            text = stamps.strftime("%Y-%m-%d") if dates else [t.isoformat() for t in stamps]
            body["series"][sym] = [
                {"timestamp": t, "close": float(c)} for t, c in zip(text, rows["close"], strict=True)
            ]
        else:
            body["assets"].append({"symbol": sym, "history": _history(rows, stamps)})
    if as_series:  # the same bars as an asset too (a frame names each symbol once)
        bare = {**required, "series": []}
        frame = panel_frame_from_panel(panel, bare, as_series, None, end, extra_periods)
        for sym, rows in frame.groupby("symbol", sort=False):
            stamps = pd.DatetimeIndex(rows["timestamp"]).tz_localize("UTC")
            body["assets"].append({"symbol": sym, "history": _history(rows, stamps)})
        order = {s: i for i, s in enumerate(symbols)}
        body["assets"].sort(key=lambda a: order[a["symbol"]])
    return body


def as_columns(body: dict) -> dict:
    """The same request body with every asset history and series sent as columns
    (`{"timestamps": [...], "close": [...], ...}`): the same request to the service (the same
    checks, forecast and audit hash), with far less JSON to decode."""
    out = dict(body)
    out["assets"] = []
    for a in body["assets"]:
        rows = a["history"]
        if isinstance(rows, dict):  # already columns
            out["assets"].append(a)
            continue
        cols: dict = {"timestamps": [r["timestamp"] for r in rows], "close": [r["close"] for r in rows]}
        for extra in ("volume", "funding_rate", "open_interest"):
            if any(extra in r for r in rows):
                cols[extra] = [r.get(extra) for r in rows]
        out["assets"].append({**a, "history": cols})
    out["series"] = {
        name: pts
        if isinstance(pts, dict)
        else {"timestamps": [p["timestamp"] for p in pts], "close": [p["close"] for p in pts]}
        for name, pts in body.get("series", {}).items()
    }
    return out


def _history(rows: pd.DataFrame, stamps: pd.DatetimeIndex) -> list[dict]:
    """An asset's bars as JSON points (optional fields only where present)."""
    from adaptive_beta.models.bundle.panel_frame import OPTIONAL_COLUMNS

    extras = {c: rows[c].to_numpy() for c in OPTIONAL_COLUMNS}
    hist = []
    for i, (t, c) in enumerate(zip(stamps, rows["close"], strict=True)):
        point = {"timestamp": t.isoformat(), "close": float(c)}
        point.update({k: float(v[i]) for k, v in extras.items() if pd.notna(v[i])})
        hist.append(point)
    return hist


def required_history_of(model: str | None = None, url: str | None = None, key: str | None = None) -> dict:
    """`required_history` from a bundle folder / `models:/NAME@ALIAS` (no server) or a running service's GET /model."""
    if url:
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.get(url.rstrip("/") + "/model", headers=headers, timeout=30)
        r.raise_for_status()
        return r.json()["required_history"]
    if not model:
        raise ValueError("give a model (bundle folder or models:/NAME@ALIAS) or the service URL")
    from adaptive_beta.models.bundle.folder import load_bundle
    from adaptive_beta.models.bundle.resolve import resolve_bundle

    return load_bundle(resolve_bundle(model)).meta.required_history.model_dump()


def main(argv: list[str] | None = None) -> int:
    """`python -m adaptive_beta.serving.client --data DIR --model URI --out request.json`: write a /forecast body."""
    import argparse
    import json

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.models.settings import get_settings

    ap = argparse.ArgumentParser(
        prog="python -m adaptive_beta.serving.client",
        description="Write a /forecast request body (JSON) with exactly the history the model asks for.",
    )
    ap.add_argument("--data", required=True, help="dataset folder (assets/, factors/) or manifest file")
    ap.add_argument("--model", help="bundle folder or models:/NAME@ALIAS (read locally, no server needed)")
    ap.add_argument("--url", help="instead of --model: a running service, e.g. http://127.0.0.1:3000")
    ap.add_argument("--key", help="API key for --url (default $ABETA_KEY)")
    ap.add_argument("--symbols", help="comma-separated assets (default: the first two non-benchmark assets)")
    ap.add_argument("--end", help="last bar (ISO timestamp, default: the dataset's last bar)")
    ap.add_argument("--out", default="request.json", help="output file (default request.json)")
    args = ap.parse_args(argv)
    if args.key is None and get_settings().key is not None:
        args.key = get_settings().key.get_secret_value()

    required = required_history_of(args.model, args.url, args.key)
    panel = load_dataset(args.data)
    if args.symbols:
        symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    else:
        symbols = [s for s in panel.symbols if s not in required.get("series", [])][:2]
    end = None
    if args.end:
        end = pd.Timestamp(args.end)
        end = end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")
    factors = raw_factor_series(args.data)
    body = forecast_request(panel, required, symbols, factors, end=end)
    Path(args.out).write_text(json.dumps(body))
    n = len(body["assets"][0]["history"]) if body["assets"] else 0
    print(
        f"wrote {args.out}: {len(symbols)} asset(s) {symbols}, {n} bars each, series {sorted(body['series'])}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except DataError as exc:  # a problem with the data or the model, said in one line
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
