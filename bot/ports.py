"""What the bot needs from core, as small protocols, so tests can pass fakes.

The real implementations are `core.catalogue` (a module satisfies `Catalogue`) and
`core.service.plan_rotation` (a `Planner`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import Protocol

from core.plan import Plan

__all__ = ["Catalogue", "Planner", "SecretInfo", "is_critical", "is_given"]


class SecretInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def risk(self) -> Enum: ...
    @property
    def source(self) -> Enum: ...
    @property
    def given_keys(self) -> tuple[str, ...]: ...


class Catalogue(Protocol):
    def get_secret(self, name: str) -> SecretInfo: ...
    def secret_names(self) -> Sequence[str]: ...


Planner = Callable[[Path, str], Plan]


def is_critical(secret: SecretInfo) -> bool:
    return str(secret.risk.value) == "critical"


def is_given(secret: SecretInfo) -> bool:
    return str(secret.source.value) == "given"
