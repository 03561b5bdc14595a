"""The ground truth itself: a run process records its end whether it finishes, is asked to stop
(SIGTERM) or is killed outright (SIGKILL, recorded by `SilentEnds`); the time window's sweep.
Fast: no control plane."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.chaos.harness import (
    TRUTH_SCRIPT,
    WINDOW,
    WINDOW_GRACE,
    WINDOWED_POOL,
    Execution,
    PlannedRun,
    SilentEnds,
    _executions,
    _sweep_window,
)
from tests.support.waiting import wait_for


def execute(directory: Path, name: str, seconds: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-I", "-S", str(TRUTH_SCRIPT), str(directory), str(seconds)],
        env={**os.environ, "WORKPOOLS_FLOW_RUN": name, "CHAOS_WORKER": "w1"},
    )
    wait_for((directory / name).exists, timeout=10, what=f"{name} started")
    return process


def ends(directory: Path, name: str) -> list[tuple[float | None, bool]]:
    lines = (directory / name).read_text().splitlines()
    return [(e.end, e.killed) for e in _executions(PlannedRun(name, "p", "q", 0.0), lines)]


def test_every_end_is_recorded_finished_stopped_or_killed(tmp_path: Path) -> None:
    silent = SilentEnds(tmp_path)
    silent.start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        finished, stopped, killed, _running = processes[:] = [
            execute(tmp_path, name, seconds)
            for name, seconds in (("finished", 0.1), ("stopped", 60), ("killed", 60), ("running", 60))
        ]
        stopped.send_signal(signal.SIGTERM)
        before_kill = time.monotonic()
        killed.kill()
        for process in (finished, stopped, killed):
            process.wait(timeout=10)  # reaped: its pid may be anyone's now
        wait_for(lambda: ends(tmp_path, "killed")[0][0] is not None, timeout=5, what="the SIGKILL recorded")
        silent.stop()
        assert ends(tmp_path, "finished") == [(ends(tmp_path, "finished")[0][0], False)]
        assert ends(tmp_path, "stopped")[0][1] is True
        end, was_killed = ends(tmp_path, "killed")[0]
        assert was_killed
        assert end is not None
        assert end >= before_kill
        assert ends(tmp_path, "running") == [(None, False)]  # alive: no end invented
        assert "vanished" in (tmp_path / "killed").read_text()
        assert "vanished" not in (tmp_path / "stopped").read_text() + (tmp_path / "finished").read_text()
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)
        silent.stop()


def beta(run: str, start: float, end: float | None) -> Execution:
    return Execution(run, WINDOWED_POOL, "q", None, "w1", start, end, killed=False)


def test_the_window_sweep_holds_the_lower_limit_from_the_grace_on() -> None:
    """Wall clock = monotonic + 1000: the window opens at monotonic 20 (wall 1020), 80, 140…"""
    offset, limit = 1000.0, int(WINDOW["limit"])
    opens, closes = 20.0, 20.0 + WINDOW["durationSeconds"]
    # Executing when it opens, above its limit: allowed until the grace ends.
    before = [beta(f"r{i}", opens - 1, opens + WINDOW_GRACE - 1) for i in range(limit + 1)]
    assert _sweep_window(before, now=100.0, wall_offset=offset)[1] == []
    # Still executing when the grace ends: a breach, seen at that moment.
    late = [beta(f"r{i}", opens - 1, opens + WINDOW_GRACE + 1) for i in range(limit + 1)]
    peak, breaches = _sweep_window(late, now=100.0, wall_offset=offset)
    assert peak == limit + 1
    assert [b.split(" at monotonic ")[1].split()[0] for b in breaches] == [f"{opens + WINDOW_GRACE:.3f}"]
    # Started within the window after the grace: a breach; once it closed: none.
    inside = [beta(f"r{i}", opens + WINDOW_GRACE + 2, opens + WINDOW_GRACE + 3) for i in range(limit + 1)]
    assert len(_sweep_window(inside, now=100.0, wall_offset=offset)[1]) == 1
    after = [beta(f"r{i}", closes + 1, closes + 2) for i in range(limit + 1)]
    assert _sweep_window(after, now=100.0, wall_offset=offset) == (0, [])
