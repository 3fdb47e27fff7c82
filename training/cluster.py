"""Joining a Ray cluster for training work (`--ray-address` / `ABETA_RAY_ADDRESS`).

Why Ray and not a home-made pool: the same code runs on a laptop (`local`: a private cluster
started for the command), on a cluster started with `ray start --head` (`auto`) or on a remote
head (`HOST:PORT`), with a shared-memory object store so the prepared data is sent once.

`import ray` stays inside the functions: with no address nothing here runs, and importing the
package (or the service) never pays for Ray.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from pathlib import Path

from adaptive_beta.models.data.schema import DataError

LOCAL = "local"  # start a private cluster for this command, stopped at its end
_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9._-]+:\d{1,5}$")


def check_address(address: str | None, where: str = "--ray-address") -> str | None:
    """`auto`, `local`, `HOST:PORT` (or `ray://HOST:PORT`) or None; anything else names `where`."""
    if address is None or address in ("auto", LOCAL) or _HOST_PORT.match(address):
        return address
    raise DataError(f"{where}={address!r}: expected auto, local or HOST:PORT")


def resolve_address(address: str | None) -> str | None:
    """The option if given, else the `ABETA_RAY_ADDRESS` setting, else None (in-process); a
    cluster address that does not answer stops here (`check_reachable`)."""
    if address:
        address = check_address(address)
    else:
        from adaptive_beta.models.settings import get_settings

        address = check_address(get_settings().ray_address, "ABETA_RAY_ADDRESS")
    if address not in (None, LOCAL):
        check_reachable(address)  # before minutes of work, not after
    return address


def ray_temp_dir() -> Path:
    """Ray's session files and logs go under the system temp folder, never into the checkout."""
    path = Path(tempfile.gettempdir()) / "abeta-ray"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def ray_session(address: str, num_cpus: int | None = None):
    """Connected to the cluster at `address` for the block (ray.init / ray.shutdown).

    A caller that already connected (a test, the benchmark) keeps its connection: the block uses
    it and leaves it open.  `local` starts a private cluster with `num_cpus` workers (default:
    every core), without the dashboard.
    """
    import ray

    if ray.is_initialized():
        yield ray
        return
    if address == LOCAL:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            _temp_dir=str(ray_temp_dir()),
        )
    else:
        check_reachable(address)
        ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


# Where `ray start --head` leaves the address that `auto` joins (Ray's own convention).
CURRENT_CLUSTER_FILE = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"


def check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, naming the address, when no Ray head answers there.

    Why: `ray.init` on an unreachable address (or `auto` left pointing at a stopped cluster by
    its address file) retries for minutes, printing warnings, before it gives up; a TCP connect to
    the head's port says the same in `timeout_s`."""
    target = address.removeprefix("ray://")
    if address == "auto":
        target = os.environ.get("RAY_ADDRESS", "")
        if not target and CURRENT_CLUSTER_FILE.is_file():
            target = CURRENT_CLUSTER_FILE.read_text().strip()
        if not target or target == "auto":
            raise DataError(
                "--ray-address auto: no Ray cluster was started on this machine (`ray start --head`), "
                "and RAY_ADDRESS is not set"
            )
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except (OSError, ValueError) as exc:
        raise DataError(
            f"Ray cluster at {target} (from --ray-address {address}) is not reachable: {exc}; "
            "start it with `ray start --head`, or check the address"
        ) from exc
