"""The demo's live view (tools/demo.py): redrawn in place on a terminal, only changes elsewhere."""

from __future__ import annotations

import io
import os

from tools.demo import TICKING, LiveView, changed, without_columns

TABLE = """\
NAME                          TYPE      STATUS   WORKERS   SLOTS   QUEUES   AGE
workpool.workpools.dev/demo   process   Ready    2/2       3/4     4        41s

NAME                                     POOL   PRIORITY   STATUS   SLOTS   SCHEDULED   AGE
workqueue.workpools.dev/demo-critical    demo   1          Ready    2/2     5           41s
workqueue.workpools.dev/demo-batch       demo   10         Ready    0/1     12          41s

NAME                              POOL   STATUS   LAST HEARTBEAT   LIMIT   RUNS   AGE
worker.workpools.dev/worker-a     demo   Online   2s               2       2      30s"""


def test_the_columns_that_tick_with_the_clock_are_cut_out() -> None:
    lines = without_columns(TABLE, TICKING)
    assert lines[0].split() == ["NAME", "TYPE", "STATUS", "WORKERS", "SLOTS", "QUEUES"]
    assert lines[1].split() == ["workpool.workpools.dev/demo", "process", "Ready", "2/2", "3/4", "4"]
    assert lines[2] == ""
    assert lines[3].split() == ["NAME", "POOL", "PRIORITY", "STATUS", "SLOTS", "SCHEDULED"]
    assert lines[-2].split() == ["NAME", "POOL", "STATUS", "LIMIT", "RUNS"]
    assert lines[-1].split() == ["worker.workpools.dev/worker-a", "demo", "Online", "2", "2"]
    assert not any(s in line for line in lines for s in ("41s", "30s", "2s "))


def test_a_frame_a_tick_later_is_the_same_without_them() -> None:
    later = TABLE.replace("41s", "43s").replace("30s", "32s").replace(" 2s   ", " 4s   ")
    assert without_columns(later, TICKING) == without_columns(TABLE, TICKING)


def test_not_a_terminal_prints_the_first_frame_then_only_new_lines() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=False)
    first = ["NAME SLOTS", "a 1", "b 1", "", "RUNS 3"]
    view.show(first)
    assert out.getvalue() == "\n".join(first) + "\n"
    view.show(first)
    assert out.getvalue() == "\n".join(first) + "\n", "nothing changed: nothing printed"
    view.show(["NAME SLOTS", "a 1", "b 2", "", "RUNS 4"])
    added = out.getvalue().removeprefix("\n".join(first) + "\n")
    assert added.startswith("-- +")
    assert added.splitlines()[1:] == ["NAME SLOTS", "b 2", "RUNS 4"], "a changed row under its heading"
    assert "\x1b" not in out.getvalue()


def test_changed_lines_come_under_their_block_heading_once() -> None:
    before = ["H1", "a", "b", "", "H2", "c"]
    assert changed(before, before) == []
    assert changed(before, ["H1", "a2", "b2", "", "H2", "c"]) == ["H1", "a2", "b2"]
    assert changed(before, ["H1x", "a", "b", "", "H2", "c", "d"]) == ["H1x", "H2", "d"]


def test_a_terminal_redraws_over_the_previous_frame() -> None:
    out = io.StringIO()
    view = LiveView(out, tty=True, size=lambda: os.terminal_size((10, 5)))
    view.show(["first", "a" * 30])
    first = out.getvalue()
    assert first == "first\x1b[K\n" + "a" * 10 + "\x1b[K\n\x1b[J", "lines cut to the width, none scrolls"
    view.show(["second", "b", "c", "d", "e", "f"])
    second = out.getvalue().removeprefix(first)
    assert second.startswith("\x1b[2F"), "back up over the two lines of the previous frame"
    assert second.count("\n") == 4, "cut to the height less one line, so the screen does not scroll"
    assert second.endswith("\x1b[J")
    view.show(["third"])
    assert out.getvalue().removeprefix(first + second).startswith("\x1b[4F")
