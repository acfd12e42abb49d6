"""A job process prewarms at a lower CPU priority and runs its call at the normal one.

Each check runs in a child Python process (with a second thread, as a job process has), so
this test process keeps its own priority.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="Linux only"),
    pytest.mark.skipif(os.getpriority(os.PRIO_PROCESS, 0) != 0, reason="runs at nice 0 only"),
]

_CHILD = """
import json, os, threading
from thinnest.engine import priority

def nices():
    return sorted(
        os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")
    )

stop = threading.Event()
helper = threading.Thread(target=stop.wait)
helper.start()
seen = {"start": nices()}
priority.lower_for_prewarm(NICE)
seen["prewarm"] = nices()
# a thread started during the prewarm (a model's thread pool) takes its creator's value
late = threading.Thread(target=stop.wait)
late.start()
seen["prewarm_late"] = nices()
priority.restore_for_call(NICE)
seen["call"] = nices()
stop.set()
print(json.dumps(seen))
"""


def _run(nice: int) -> dict[str, list[int]]:
    code = _CHILD.replace("NICE", str(nice))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return dict(json.loads(done.stdout))


def test_prewarm_runs_niced_and_the_call_gets_its_priority_back() -> None:
    seen = _run(10)
    assert seen["start"] == [0, 0]
    assert seen["prewarm"] == [10, 10]
    assert seen["prewarm_late"] == [10, 10, 10]
    if os.geteuid() == 0:  # raising priority back needs root or CAP_SYS_NICE
        assert seen["call"] == [0, 0, 0]
    else:
        assert seen["call"] == [10, 10, 10]


def test_nice_zero_leaves_the_priority_alone() -> None:
    seen = _run(0)
    assert seen["start"] == seen["prewarm"] == [0, 0]
    assert seen["prewarm_late"] == seen["call"] == [0, 0, 0]
