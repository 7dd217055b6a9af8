"""Run a command (libvirtd) under a child subreaper that reaps every orphan as it exits.

QEMU daemonizes: its first process exits and the guest's process is reparented to the nearest
subreaper, else to PID 1. When libvirtd ends a QEMU (the source's, after every migration) it
sends SIGTERM and then looks every 200 ms whether the process is gone (virProcessKillPainfully),
and a zombie is not gone until its parent reaps it. This machine's PID 1 (a VM's init, not
systemd) reaps orphans once a second, on the second: every migration's call ended 0.1-0.3 s past
a whole second, 1-2 s later than QEMU had finished, on a systemd host it is not. Here this process
is that parent: it reaps at once, as a host's init does. It forwards the signals it is sent to the
command and exits as the command did; if it is killed, the kernel kills the command too.

    python tests/harness/reaper.py COMMAND [ARG...]
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value})")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    child = os.fork()
    if child == 0:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # kept across exec: SIGKILL of the reaper ends it too
        os.execvp(argv[0], argv)
    for number in FORWARDED:
        signal.signal(number, lambda sent, _frame: os.kill(child, sent))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 1  # not reachable: the command is our child until we have reaped it
        if pid != child:
            continue  # an orphan (a QEMU libvirtd ended): reaped, which is all it needed
        if os.WIFSIGNALED(status):
            # End as the command did, so that Popen's returncode is -SIGNAL as it was without us.
            number = os.WTERMSIG(status)
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
