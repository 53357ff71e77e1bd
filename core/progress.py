"""Progress: the engine tells what it does as a stream of events.

The terminal prints them; the worker turns them into one Slack message it keeps
updating. Reporting must never break a rotation: `emit_safely` logs and drops
a reporter's failure, so a Slack outage cannot leave Postgres half-rotated.
Events carry names and fingerprints, never values.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from dataclasses import dataclass
from typing import Protocol, TextIO

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepStarted:
    step: str
    detail: str = ""


@dataclass(frozen=True)
class StepFinished:
    step: str
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class StepFailed:
    step: str
    detail: str


@dataclass(frozen=True)
class CheckResult:
    """One verification: `ok` with the evidence that shows it.

    `ok` is None when there was nothing to check (zero items): such a check is reported
    as not applicable, never as passed, and does not fail a verification either.
    """

    name: str
    ok: bool | None
    evidence: str

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "-"}[self.ok]  # "-": not applicable

    @property
    def failed(self) -> bool:
        return self.ok is False


@dataclass(frozen=True)
class Note:
    """Anything else worth telling people (skipped roles, rollback started, ...)."""

    text: str


Event = StepStarted | StepFinished | StepFailed | CheckResult | Note


class Progress(Protocol):
    def emit(self, event: Event) -> None: ...


def emit_safely(progress: Progress, event: Event) -> None:
    try:
        progress.emit(event)
    except Exception:
        log.exception("progress reporter failed; the rotation goes on")


class SilentProgress:
    def emit(self, event: Event) -> None:
        pass


class RecordingProgress:
    """Keeps every event; used by tests and by callers that report at the end."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


class ConsoleProgress:
    """One line per event, for the terminal."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout

    def emit(self, event: Event) -> None:
        self.out.write(format_event(event) + "\n")
        self.out.flush()


def format_event(event: Event) -> str:
    match event:
        case StepStarted(step, detail):
            return f"  … {step}" + (f": {detail}" if detail else "")
        case StepFinished(step, detail, seconds):
            return f"  ✓ {step}" + (f": {detail}" if detail else "") + f" ({seconds:.1f}s)"
        case StepFailed(step, detail):
            return f"  ✗ {step}: {detail}"
        case CheckResult(name, _, evidence):
            return f"    {event.mark} {name}: {evidence}"
        case Note(text):
            return f"  ! {text}"


class LiveConsoleProgress(ConsoleProgress):
    """ConsoleProgress with a ticking line while a step runs, for a terminal.

    Long steps (a restart waits on health checks) would otherwise look hung.
    The ticker thread only redraws its own line; events print as usual.
    """

    FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, out: TextIO | None = None, interval_s: float = 0.1) -> None:
        super().__init__(out)
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._step: tuple[str, float] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)
        self._thread.start()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._clear()
            super().emit(event)
            if isinstance(event, StepStarted):
                self._step = (event.step, time.monotonic())
            elif isinstance(event, StepFinished | StepFailed):
                self._step = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._clear()

    def _tick(self) -> None:
        frame = 0
        while not self._stop.wait(self.interval_s):
            with self._lock:
                if self._step is not None:
                    name, since = self._step
                    spinner = self.FRAMES[frame % len(self.FRAMES)]
                    self.out.write(f"\r  {spinner} {name} … {time.monotonic() - since:4.0f}s")
                    self.out.flush()
                    frame += 1

    def _clear(self) -> None:
        self.out.write("\r\033[K")


def console_progress(out: TextIO | None = None) -> ConsoleProgress:
    """A live display on a terminal, plain lines anywhere else (logs, CI, pipes)."""
    out = out if out is not None else sys.stdout
    return LiveConsoleProgress(out) if out.isatty() else ConsoleProgress(out)
