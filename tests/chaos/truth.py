"""The command of every chaos run: the ground truth of what really executed, and when.

    python -I -S truth.py DIR SECONDS

Appends to DIR/<run name> (from WORKPOOLS_FLOW_RUN, which the worker sets) the line
`start <CLOCK_MONOTONIC> <pid> <worker>` (worker: CHAOS_WORKER, inherited from the worker process),
sleeps SECONDS, appends `end <CLOCK_MONOTONIC>` and exits 0. On SIGTERM it appends
`end <CLOCK_MONOTONIC> killed` and exits 143. CLOCK_MONOTONIC is system-wide, so the lines of every
run compare with each other. A re-execution of the same run appends another `start`. A SIGKILL
leaves no line: the harness (`SilentEnds`) then appends `end <CLOCK_MONOTONIC> vanished` once the
pid is gone. Stdlib only.
"""

import os
import signal
import sys
import time


def append(path: str, line: str) -> None:
    # One write of one short line with O_APPEND: lines never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main() -> int:
    directory, seconds = sys.argv[1], float(sys.argv[2])
    path = os.path.join(directory, os.environ["WORKPOOLS_FLOW_RUN"])

    def stopped(signum: int, frame: object) -> None:
        append(path, f"end {time.monotonic()} killed")
        os._exit(143)

    signal.signal(signal.SIGTERM, stopped)
    append(path, f"start {time.monotonic()} {os.getpid()} {os.environ.get('CHAOS_WORKER', '?')}")
    time.sleep(seconds)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the end is written once, killed or not
    append(path, f"end {time.monotonic()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
