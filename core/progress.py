"""Progress: the engine tells what it does as a stream of events.

The terminal prints them; the worker turns them into one Slack message it keeps
updating. Reporting must never break a rotation: `emit_safely` logs and drops
a reporter's failure, so a Slack outage cannot leave Postgres half-rotated.
Events carry names and fingerprints, never values.
"""

from __future__ import annotations

import logging
import sys
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
    """One verification: `ok` with the evidence that shows it."""

    name: str
    ok: bool
    evidence: str


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

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

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
        case CheckResult(name, ok, evidence):
            return f"    {'✓' if ok else '✗'} {name}: {evidence}"
        case Note(text):
            return f"  ! {text}"
