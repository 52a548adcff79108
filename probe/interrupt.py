"""Ctrl-C at safe points: the first press asks the work to stop, the second stops it now.

A KeyboardInterrupt raised at an arbitrary bytecode can land inside a library's
critical section (a progress bar's lock taken by one thread and waited for by its
refresh thread, a file half written) and hang or corrupt the run. Inside
:func:`stop_at_checkpoints`, the first SIGINT only sets a flag; long loops call
:func:`checkpoint` at points where stopping is safe (the engine after every round,
the smoothed classifier between model batches),
which raises KeyboardInterrupt there. A second SIGINT raises at once, as usual.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

_requested = threading.Event()


def checkpoint() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed inside :func:`stop_at_checkpoints`."""
    if _requested.is_set():
        _requested.clear()
        raise KeyboardInterrupt


@contextmanager
def stop_at_checkpoints() -> Iterator[None]:
    """Defer the first Ctrl-C to the next :func:`checkpoint` (main thread only; elsewhere,
    or where SIGINT is not Python's default handler, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame) -> None:
        if _requested.is_set():  # pressed twice before a checkpoint: stop now
            _requested.clear()
            raise KeyboardInterrupt
        _requested.set()

    _requested.clear()
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _requested.clear()
