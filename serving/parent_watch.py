"""A BentoML worker stops when the server that started it is gone.

BentoML starts each worker in its own session, so `kill -9` of the `abeta serve` process group
kills the server (the circus arbiter) but leaves the worker answering on the inherited socket.
`exit_with_parent()` (called in each worker) watches the parent pid from a daemon thread: once
the worker has been re-parented (to init or a subreaper), it sends itself SIGTERM (uvicorn's
graceful stop: in-flight requests finish, the audit log closes) and exits hard after a grace
period if that did not end it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger("abeta.service")


def exit_with_parent(poll_s: float = 0.5, grace_s: float = 10.0) -> threading.Thread:
    """Start the watch of this process's parent; returns the (daemon) thread."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        log.error("the server process %d is gone: this worker (pid %d) stops", parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="abeta-parent-watch", daemon=True)
    thread.start()
    return thread
