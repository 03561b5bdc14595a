"""The per-run supervisor: runs one command and takes it down if the worker dies.

A run's command is started in a session of its own (so cancellation reaches all its processes),
which also means nothing kills it when the worker dies: "never executed twice" would hold in etcd
but not on the machine. This tiny process sits between the worker and the command:

    worker ── supervise.py (session leader, PR_SET_PDEATHSIG) ── command ── its children

It asks the kernel for a signal when its parent (the worker) dies, by crash or SIGKILL, and then
SIGKILLs its whole process group. Otherwise it only waits: a SIGTERM from the worker reaches the
whole group anyway, and it leaves with the command's exit status (or dies by the same signal), so
the worker sees exactly what the command did.

Run by path with `python -I`: standard library only, so it starts in milliseconds.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_DIED = signal.SIGUSR1


def _kill_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)  # the command, its children, and this process


def main(argv: list[str]) -> int:
    parent, command = int(argv[1]), argv[3:]
    signal.signal(PARENT_DIED, _kill_group)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, PARENT_DIED) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the worker died before the request took effect
        _kill_group()
    # The group gets the worker's SIGTERM; a handler (not SIG_IGN, which exec would inherit)
    # keeps this process waiting for the command's own answer to it.
    signal.signal(signal.SIGTERM, lambda *_: None)
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(PARENT_DIED, signal.SIG_DFL)
        try:
            os.execvp(command[0], command)
        except OSError as error:
            print(f"cannot start {command[0]!r}: {error.strerror or error}", file=sys.stderr)
            os._exit(127)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
