"""What the bot needs from core's catalogue, as a small protocol, so tests can pass fakes.

The real implementation is `core.catalogue` (the module satisfies `Catalogue`). Plans do
not come from core in the bot: the worker publishes them (`workers.plans`).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Protocol

__all__ = ["Catalogue", "SecretInfo", "is_critical", "is_given"]


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


def is_critical(secret: SecretInfo) -> bool:
    return str(secret.risk.value) == "critical"


def is_given(secret: SecretInfo) -> bool:
    return str(secret.source.value) == "given"
