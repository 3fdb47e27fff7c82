"""Service replicas sharing one PostgreSQL (issue 14 goal): 1 replica vs 2 replicas, 32 clients.

    python benchmarks/bench_replicas.py [--root /tmp/abeta-bench-replicas] [--pg-url postgresql://...]
                                        [--clients 32] [--requests 1500] [--cap-s 60] [--rounds 3]

Rows alternate 1 replica, 2 replicas for --rounds rounds; the ratio is the median of the rounds'.
Each row starts fresh `bentoml serve` replicas (ABETA_WORKERS=1, ABETA_ORT_THREADS=1 each) on a
fresh database of one PostgreSQL server holding the audit log and the market store, then sends a
fixed number of stateless /forecast requests (one asset, the toy bundle of
adaptive_beta.training.toy_bundle, trained once and cached under --root) from `--clients`
concurrent asyncio clients in this process; with two replicas the clients alternate between the
two ports (what a round-robin load balancer does).  Without --pg-url a throwaway PostgreSQL is
started with initdb/pg_ctl (the Debian `postgresql` package) and removed afterwards.

Printed per row: requests/s, latency percentiles, and where the CPU went during the load (seconds
of the service processes, PostgreSQL, this client process, and the whole machine's busy share from
/proc/stat), so a miss of the 1.3x goal shows whether the cores were simply full.  After each row
every acknowledged request_id is looked up in the audit log and the chain is verified.

Reading it on a shared machine: "service cores" (service CPU seconds / wall) is the CPU the
replicas actually got; when other work holds the cores (load average above the core count), two
replicas also win a larger share of the scheduler, so compare CPU ms per request as well.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = {"ABETA_WORKERS": "1", "ABETA_ORT_THREADS": "1", "ABETA_MAX_CONCURRENCY": "64"}
GOAL = 1.3


def ensure_bundle(root: Path) -> tuple[Path, Path]:
    """(data folder, bundle folder) under root, trained once (needs torch) and reused afterwards."""
    if not (root / "bundle" / "manifest.json").exists():
        from adaptive_beta.training.toy_bundle import build_real_bundle

        root.mkdir(parents=True, exist_ok=True)
        build_real_bundle(root)
    return root / "data", root / "bundle"


# ------------------------------------------------------------------------ a throwaway PostgreSQL
def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the server tools as the `postgres` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class ThrowawayPostgres:
    """initdb + pg_ctl start on 127.0.0.1 in a temporary folder; stop and remove on exit."""

    def __enter__(self) -> ThrowawayPostgres:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            raise SystemExit("no PostgreSQL server binaries: apt-get install postgresql, or pass --pg-url")
        self.bindir = Path(initdb).parent
        self.root = Path(tempfile.mkdtemp(prefix="abeta-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.data = self.root / "data"
        run = {"check": True, "capture_output": True, "timeout": 120}
        subprocess.run(
            _as_postgres([initdb, "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8"]), **run
        )
        opts = f"-p {port} -h 127.0.0.1 -k {self.root} -c max_connections=200"
        pg_ctl = str(self.bindir / "pg_ctl")
        log = str(self.root / "server.log")
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(self.data), "-o", opts, "-l", log, "-w", "start"]), **run
        )
        self.url = f"postgresql://postgres@127.0.0.1:{port}"
        return self

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def __exit__(self, *exc: object) -> None:
        pg_ctl = str(self.bindir / "pg_ctl")
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"]), capture_output=True
        )
        shutil.rmtree(self.root, ignore_errors=True)


def new_database(server_url: str) -> str:
    from adaptive_beta.models.database import create_database

    return create_database(server_url, "bench")


# ---------------------------------------------------------------------------------- CPU accounting
def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


# --------------------------------------------------------------------------------------- the load
async def load(urls: list[str], payload: bytes, headers: dict, clients: int, total: int, cap_s: float):
    """`clients` loops (client i on urls[i % len(urls)]) share `total` requests; stop at cap_s.
    Returns (latencies, request ids answered, errors, wall seconds)."""
    import httpx

    lat: list[float] = []
    ids: list[str] = []
    errors, left = 0, total
    hdrs = {**headers, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url in urls:  # connections and the workers' first request warm
            await client.post(url, content=payload, headers=hdrs)
        deadline = time.perf_counter() + cap_s

        async def one(url: str) -> None:
            nonlocal left, errors
            while left > 0 and time.perf_counter() < deadline:
                left -= 1
                t = time.perf_counter()
                try:
                    r = await client.post(url, content=payload, headers=hdrs)
                except httpx.HTTPError:
                    errors += 1
                    continue
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t)
                    ids.append(r.json()["request_id"])
                else:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*[one(urls[i % len(urls)]) for i in range(clients)])
        wall = time.perf_counter() - t0
    return lat, ids, errors, wall


def run_row(args, n_replicas: int, bundle: Path, body: bytes | None, data_dir: Path, pg, tmp: Path) -> dict:
    """Start `n_replicas` on a fresh database, load them, check the log; one result row."""
    from adaptive_beta.models.audit.log import AuditReader, verify_chain
    from adaptive_beta.serving.client import LocalService, cpu_seconds, process_tree

    db = new_database(pg.url)
    key = "trader-" + secrets.token_hex(16)  # one key valid on every replica (a client does not care)
    services = []
    try:
        for k in range(n_replicas):
            env = {**ENV, "ABETA_MARKET_DB": db, "BENTOML_HOME": str(tmp / f"home-{n_replicas}-{k}")}
            env["ABETA_API_KEYS"] = f"bench@trader:{key}"
            svc = LocalService(str(bundle), db, tmp / f"replica-{n_replicas}-{k}.log", extra_env=env)
            svc.trader_key = key
            services.append(svc)
            svc.start()
        svc = services[0]
        if body is None:
            body = stateless_body(svc, data_dir)
        urls = [s.url + "/forecast" for s in services]
        service_pids = [p for s in services for p in process_tree(s.proc.pid)]
        pg_pids = process_tree(pg.postmaster_pid()) if pg.postmaster_pid() else []
        before = (cpu_seconds(service_pids), cpu_seconds(pg_pids), time.process_time(), machine_busy())
        lat, ids, errors, wall = asyncio.run(
            load(urls, body, svc.headers(), args.clients, args.requests, args.cap_s)
        )
        after = (cpu_seconds(service_pids), cpu_seconds(pg_pids), time.process_time(), machine_busy())
    finally:
        for s in services:
            s.stop()
    with AuditReader(db) as reader:
        lost = sum(reader.get(rid) is None for rid in ids)
    chain = verify_chain(db)
    busy = (after[3][0] - before[3][0]) / max(1, after[3][1] - before[3][1])
    ms = np.asarray(lat) * 1e3
    return {
        "replicas": n_replicas,
        "n": len(lat),
        "errors": errors,
        "rps": len(lat) / wall,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "cpu_service": after[0] - before[0],
        "cpu_pg": after[1] - before[1],
        "cpu_client": after[2] - before[2],
        "wall": wall,
        "busy": busy,
        "load": os.getloadavg()[0],
        "lost": lost,
        "chain": f"ok {chain.n_records}" if chain.ok else f"BROKEN: {chain.problem}",
        "body": body,
    }


def stateless_body(svc, data_dir: Path) -> bytes:
    """A stateless /forecast body for one asset with the history the model needs."""
    import httpx

    from adaptive_beta.models.data.loaders import load_dataset
    from adaptive_beta.serving.client import forecast_request, raw_factor_series

    panel = load_dataset(data_dir)
    info = httpx.get(svc.url + "/model", headers=svc.headers(), timeout=30).json()
    symbols = [s for s in panel.symbols if s not in info["required_history"]["series"]][:1]
    body = forecast_request(panel, info["required_history"], symbols, raw_factor_series(data_dir))
    return json.dumps(body).encode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(tempfile.gettempdir()) / "abeta-bench-replicas")
    ap.add_argument("--pg-url", help="postgresql://user@host:port of a server to create databases on")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients")
    ap.add_argument("--requests", type=int, default=1500, help="requests per row")
    ap.add_argument("--cap-s", type=float, default=60.0, help="time cap per row (seconds)")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="1-then-2-replica rounds, interleaved (median ratio: shared machines)",
    )
    args = ap.parse_args()

    data_dir, bundle = ensure_bundle(args.root)
    tmp = Path(tempfile.mkdtemp(prefix="abeta-bench-replicas-"))
    print(
        f"settings: {args.clients} clients, {args.requests} requests per row (cap {args.cap_s:g} s), "
        f"per replica {' '.join(f'{k}={v}' for k, v in ENV.items())}, {os.cpu_count()} cores, "
        f"audit log + market store on one PostgreSQL; bundle {bundle}"
    )
    rows: list[dict] = []
    with _postgres(args.pg_url) as pg:
        body = None
        for _ in range(max(1, args.rounds)):
            for n in (1, 2):
                rows.append(run_row(args, n, bundle, body, data_dir, pg, tmp))
                body = rows[-1]["body"]
    print(f"request: 1 asset, {len(body) / 1024:.0f} KiB\n")
    head = f"{'replicas':>8s} {'n':>5s} {'err':>4s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s}"
    print(head + "  CPU s: service  postgres  client  service cores  machine busy  load avg   lost  chain")
    for r in rows:
        print(
            f"{r['replicas']:8d} {r['n']:5d} {r['errors']:4d} {r['rps']:7.1f} {r['p50']:7.1f} {r['p99']:7.1f}"
            f"  {r['cpu_service']:14.1f} {r['cpu_pg']:9.1f} {r['cpu_client']:7.1f}"
            f" {r['cpu_service'] / r['wall']:14.2f} {r['busy']:13.0%} {r['load']:9.1f}"
            f" {r['lost']:6d}  {r['chain']}"
        )
    ratios = [two["rps"] / one["rps"] for one, two in zip(rows[::2], rows[1::2], strict=True)]
    ratio = float(np.median(ratios))
    each = ", ".join(f"{r:.2f}x" for r in ratios)
    print(
        f"\n{'PASS' if ratio >= GOAL else 'MISS'}  2 replicas / 1 replica throughput >= {GOAL}x: {ratio:.2f}x median ({each})"
    )
    for r in rows[:2]:
        per_req = 1e3 * (r["cpu_service"] + r["cpu_pg"] + r["cpu_client"]) / max(1, r["n"])
        print(
            f"      {r['replicas']} replica(s): {per_req:.1f} CPU ms per request "
            f"(service {1e3 * r['cpu_service'] / max(1, r['n']):.1f}, postgres {1e3 * r['cpu_pg'] / max(1, r['n']):.1f}, "
            f"client {1e3 * r['cpu_client'] / max(1, r['n']):.1f}); cores busy {r['busy']:.0%} of {os.cpu_count()}"
        )
    print(f"PASS  0 lost acknowledged records: {sum(r['lost'] for r in rows) == 0}; logs in {tmp}")


class _postgres:
    """The server of --pg-url, or a throwaway one."""

    def __init__(self, url: str | None):
        self.url, self._tmp = url, None

    def __enter__(self):
        if self.url:
            self.url = self.url.rstrip("/")
            return self
        self._tmp = ThrowawayPostgres().__enter__()
        return self._tmp

    def postmaster_pid(self) -> int:
        return 0  # an external server's processes are not ours to measure

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.__exit__(*exc)


if __name__ == "__main__":
    main()
