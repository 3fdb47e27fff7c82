"""`cpu_seconds`: the benchmarks' per-request server CPU (one rule for bench_service, bench_stored
and bench_replicas)."""

from __future__ import annotations

import os
import time

from adaptive_beta.serving.client import cpu_seconds, process_tree


def test_cpu_seconds_counts_this_process_work_and_ignores_gone_pids():
    before = cpu_seconds([os.getpid()])
    t0 = time.process_time()
    x = 0
    while time.process_time() - t0 < 0.3:  # 0.3 s of this process's CPU
        x += 1
    spent = cpu_seconds([os.getpid()]) - before
    assert 0.2 <= spent <= 1.0, spent
    assert cpu_seconds([2**22 + 7]) == 0  # beyond pid_max: no such process
    assert process_tree(os.getpid())[0] == os.getpid()
