"""Errors turned into sentences for Slack, in one place. Messages name things, never values."""

from __future__ import annotations

from core.errors import InputError, PreflightFailed, RecoveryNeeded, RotatorError, StepFailed

__all__ = ["explain"]


def explain(error: RotatorError) -> str:
    """What failed, what state things are in, what to do next."""
    if isinstance(error, InputError):
        return f":warning: {error}"
    if isinstance(error, PreflightFailed):
        return f":x: Preflight failed: {error} Nothing was changed."
    if isinstance(error, StepFailed):
        where = f" at step `{error.step}`" if error.step else ""
        return f":x: Rotation failed{where}: {error}"
    if isinstance(error, RecoveryNeeded):
        return f":rotating_light: {error} Run `rotator recover` on the host."
    return f":x: {error}"
