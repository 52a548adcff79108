"""Ctrl-C at safe points: the first press asks the work to stop, the second stops it now.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside a library's
critical section (a progress bar's lock taken by one thread and waited for by its
refresh thread, a file half written) and hang or corrupt the run. Inside
:func:`stop_at_checkpoints`, the first SIGINT (or SIGTERM) only sets a flag; long loops call
:func:`checkpoint` at points where stopping is safe (the engine after every round,
the smoothed classifier between model batches),
which raises KeyboardInterrupt there. A second SIGINT raises at once, as usual.

A run stopped this way exits with :func:`exit_code`: 128 + the signal's number, as a shell
reports a process that a signal killed (130 for SIGINT, 143 for SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = threading.Event()
_received = [int(signal.SIGINT)]  # the last signal that stopped (or asked to stop) the work


def exit_code() -> int:
    """The exit code of a run stopped by a signal: 128 + its number (SIGINT 130, SIGTERM 143;
    130 when the stop came from a KeyboardInterrupt that no signal handler of ours saw)."""
    return 128 + _received[0]


def checkpoint() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside :func:`stop_at_checkpoints`."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt


@contextmanager
def stop_at_checkpoints() -> Iterator[None]:
    """Defer the first Ctrl-C (SIGINT) or SIGTERM to the next :func:`checkpoint`; a second one
    stops at once. Main thread only; elsewhere nothing changes.

    The handlers are installed whatever was there before, so that a run started in the
    background by a script (which inherits SIGINT ignored) still stops on ``kill -INT``,
    and a scheduler's or CI's SIGTERM ends it as cleanly as Ctrl-C (finished results kept).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        _received[0] = int(signum)
        if _requested.is_set():  # asked twice before a checkpoint: stop now
            _requested.clear()
            raise KeyboardInterrupt
        _requested.set()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _requested.clear()
    _received[0] = int(signal.SIGINT)
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        _requested.clear()
