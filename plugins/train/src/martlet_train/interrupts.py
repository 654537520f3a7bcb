"""Ctrl-C and SIGTERM during training: the first finishes the current step, saves a checkpoint
and stops; a second stops at once."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any


class Interrupts:
    """Whether a stop was asked for (:attr:`requested`, by which :attr:`signal`), while
    :meth:`caught` is active on the main thread."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.requested = False
        self.signal = signal.SIGINT

    def request(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step (what Ctrl-C does)."""
        self.requested = True
        self.signal = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name

    @contextlib.contextmanager
    def caught(self) -> Iterator[None]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.requested:
                raise KeyboardInterrupt
            self.request(signum)
            self.say(
                f"\n{self.name}: stopping after this step to save a checkpoint ({self.name} "
                "again to quit at once)"
            )

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, old in previous.items():
                signal.signal(number, old)
