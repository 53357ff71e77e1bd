"""Where a planned signing-key rotation stands between its phases, and what comes next.

Standby, rotate and revoke are rotations of their own, hours apart: JWT_KEYS alone cannot
tell whether its second key is waiting to sign (after standby) or waiting to go (after
rotate). This record, `<state dir>/signing-key.json`, says which phase finished and when,
so the next one is chosen right and revoke waits until every token the old key signed has
expired. It holds kids and times, never keys.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from core.catalogue import Mode, RotationOptions, Secret
from core.envfile import write_atomic
from core.errors import InputError
from core.signing_keys import KeySet, Phase, kid_of

__all__ = ["REVOKE_MARGIN_S", "KeySchedule", "next_phase", "record_phase", "with_phase"]

REVOKE_MARGIN_S = 15 * 60 + 30
"""After the longest token lifetime: Supabase's 15 minutes, plus PostgREST's 30 s of clock
skew (zero-logout-jwt.md, phase 3)."""

DEFAULT_JWT_EXPIRY_S = 3600


@dataclass(frozen=True)
class KeySchedule:
    finished: Phase
    """The last phase that finished: standby or rotate."""
    new_kid: str
    old_kid: str
    at: float
    revoke_after: float = 0.0
    """After rotate: the earliest time revoke may run."""

    @staticmethod
    def path(state_dir: Path) -> Path:
        return state_dir / "signing-key.json"

    @classmethod
    def read(cls, state_dir: Path) -> KeySchedule | None:
        try:
            raw = json.loads(cls.path(state_dir).read_text())
            return cls(**{**raw, "finished": Phase(raw["finished"])})
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            raise InputError(
                f"{cls.path(state_dir)} is unreadable; remove it once you know which phase of "
                "the signing-key rotation finished last"
            ) from None

    def write(self, state_dir: Path) -> None:
        body = asdict(self) | {"finished": self.finished.value}
        write_atomic(self.path(state_dir), json.dumps(body, indent=1) + "\n")

    @staticmethod
    def clear(state_dir: Path) -> None:
        KeySchedule.path(state_dir).unlink(missing_ok=True)


def next_phase(state_dir: Path, jwt_keys: str, *, now: float | None = None) -> Phase:
    """The phase a planned signing-key rotation runs next.

    Raises:
        InputError: revoke is not due yet (the message says when), or JWT_KEYS and the
            record disagree (someone edited the keys by hand).
    """
    now = time.time() if now is None else now
    keys = KeySet.parse(jwt_keys)
    kids = {kid_of(k) for k in keys.asymmetric}
    signer = kid_of(keys.signing)
    record = KeySchedule.read(state_dir)
    if len(kids) == 1:
        return Phase.STANDBY
    if record is not None and kids == {record.new_kid, record.old_kid}:
        if record.finished is Phase.STANDBY and signer == record.old_kid:
            return Phase.ROTATE
        if record.finished is Phase.ROTATE and signer == record.new_kid:
            if now < record.revoke_after:
                when = datetime.fromtimestamp(record.revoke_after, UTC).strftime(
                    "%Y-%m-%d %H:%M UTC"
                )
                raise InputError(
                    f"the old signing key may still have live tokens: revoke it at {when} or "
                    "later (or rotate with --compromise to cut it off now, signing users out "
                    "of sessions it signed)"
                )
            return Phase.REVOKE
    raise InputError(
        f"JWT_KEYS holds {len(kids)} asymmetric keys and no record of rotator's phases matches "
        "them; finish that rotation by hand, or rotate with --compromise to replace them all"
    )


def record_phase(
    state_dir: Path, phase: Phase, before: str, after: str, *, jwt_expiry_s: int | None
) -> KeySchedule | None:
    """Note a finished phase (before/after: JWT_KEYS). Returns the record, or None once the
    rotation is complete (revoke, or a compromise replacement)."""
    if phase in (Phase.REVOKE, Phase.REPLACE):
        KeySchedule.clear(state_dir)
        return None
    old_kid = kid_of(KeySet.parse(before).signing)
    after_keys = KeySet.parse(after)
    if phase is Phase.STANDBY:
        new_kid = next(kid_of(k) for k in after_keys.asymmetric if kid_of(k) != old_kid)
    else:
        new_kid = kid_of(after_keys.signing)
    now = time.time()
    lifetime = jwt_expiry_s if jwt_expiry_s is not None else DEFAULT_JWT_EXPIRY_S
    record = KeySchedule(
        finished=phase,
        new_kid=new_kid,
        old_kid=old_kid,
        at=now,
        revoke_after=now + lifetime + REVOKE_MARGIN_S if phase is Phase.ROTATE else 0.0,
    )
    record.write(state_dir)
    return record


def with_phase(
    secret: Secret, options: RotationOptions, state_dir: Path, current: Mapping[str, str]
) -> RotationOptions:
    """`options` as this rotation runs them: `all` is always a compromise; the signing key
    runs the phase the caller chose, else its next one in a planned rotation, all at once
    in a compromise."""
    if secret.compromise_only:
        options = replace(options, mode=Mode.COMPROMISE)
    if secret.name != "jwt-signing-key" or options.phase is not None:
        return options
    if options.mode is Mode.COMPROMISE:
        return replace(options, phase=Phase.REPLACE)
    if not secret.is_configured(current):
        return options  # new_values says why
    return replace(options, phase=next_phase(state_dir, current["JWT_KEYS"]))
