"""The idle-core sampler that sizes the llama prompt threads (providers/_cpuidle.py)."""

from __future__ import annotations

import time
from pathlib import Path

from thinnest.providers._cpuidle import PERIOD, IdleSampler, idle_cores


def _stat(path: Path, ticks: dict[int, tuple[int, int]]) -> None:
    """Write a /proc/stat with ``{cpu: (busy user ticks, idle ticks)}``."""
    lines = ["cpu  1 2 3 4 5 6 7 8 0 0"]
    lines += [f"cpu{c} {busy} 0 0 {idle} 0 0 0 0 0 0" for c, (busy, idle) in ticks.items()]
    path.write_text("\n".join([*lines, "intr 12345", "ctxt 678"]) + "\n")


def _wait_until(check, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(PERIOD / 2)
    return False


def test_counts_the_cores_idle_over_the_last_period(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    _stat(stat, {0: (100, 100), 1: (100, 100), 2: (100, 100)})
    sampler = IdleSampler(path=str(stat), cpus={0, 1})  # cpu2 is not ours
    assert sampler.idle_cores() == 0  # nothing measured yet
    # cpu0 idle, cpu1 busy, cpu2 (not in the set) idle
    _stat(stat, {0: (101, 199), 1: (190, 110), 2: (100, 200)})
    assert _wait_until(lambda: sampler.idle_cores() == 1)
    # both busy: the next period says so
    _stat(stat, {0: (180, 200), 1: (280, 111), 2: (100, 300)})
    assert _wait_until(lambda: sampler.idle_cores() == 0)
    assert sampler.idle_cores(threshold=0.0) == 2


def test_this_machine_has_a_reading() -> None:
    first = idle_cores()
    assert first is not None and first >= 0
    time.sleep(3 * PERIOD)
    now = idle_cores()
    assert now is not None and 0 <= now <= 64
