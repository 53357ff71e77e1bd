"""Every secret rotator can rotate: its `.env` keys, what rotating it costs, its new values.

Names are what people type (`/rotate jwt-secret`). Services are not listed here: which
containers consume a key is read from the deployment's compose files (`core.deployment`),
so the plan follows the files actually in use.

Risk classes. A secret is CRITICAL when a rotation of it, done or botched, takes the whole
stack down, breaks every client app until it is updated, or changes state that does not
follow `.env` (database role passwords, the pooler's encrypted tenant). Critical
rotations need the approval quorum. They are: `postgres-password`, `jwt-secret`,
`api-keys`, `opaque-api-keys`, `vault-enc-key` (Supavisor's tenant row is encrypted with
it and must be recreated), `all`, and the refused `realtime-db-enc-key`. Everything else
is NORMAL: a few services restart and nothing outside the stack breaks, or only the
clients of one narrow feature (S3 protocol, Logflare) need the new value.

Usage:

    secret = get_secret("jwt-secret")
    changes = secret.new_values(env)      # {"JWT_SECRET": ..., "ANON_KEY": ..., ...}
    secret.validate(changes, current=env) # again, before anything is written
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import jwt

from core import secretgen
from core.errors import InvalidSecretValue, SecretNotConfigured, SecretRefused, UnknownSecret
from core.jwtkeys import PUBLISHABLE_PREFIX as _PUBLISHABLE_PREFIX
from core.jwtkeys import SECRET_PREFIX as _SECRET_PREFIX
from core.jwtkeys import (
    JwkError,
    api_key_payload,
    b64url,
    decode_hs256,
    make_opaque_key,
    oct_secrets,
    replace_oct_key,
    sign_hs256,
)
from core.roles import SHARED_PASSWORD_ROLES
from core.signing_keys import (
    ASYMMETRIC_KEYS,
    SIGNING_KEYS,
    KeySet,
    Phase,
    api_keys_signed_by,
    kid_of,
    new_ec_key,
    verify_es256,
)

__all__ = [
    "CATALOGUE",
    "DB_ROLES",
    "REALTIME_DB_ENC_KEY_REASON",
    "SESSIONS_KEPT",
    "SESSIONS_REVOKED",
    "Mode",
    "Risk",
    "RotationOptions",
    "Secret",
    "Source",
    "describe_impact",
    "get_secret",
    "secret_names",
]


class Source(StrEnum):
    """Where a new value comes from."""

    GENERATED = "generated"
    """Rotator draws it (`core.secretgen`, `core.jwtkeys`)."""
    GIVEN = "given"
    """A person supplies it (SMTP: the provider issues credentials, rotator cannot)."""


class Mode(StrEnum):
    """How much a rotation may cost users to cut an old credential off."""

    PLANNED = "planned"
    """Inside a window: nobody is logged out where the secret allows it (the signing key
    goes through standby, rotate and revoke)."""
    COMPROMISE = "compromise"
    """After a leak: every old credential dies now (the default for emergencies)."""


@dataclass(frozen=True)
class RotationOptions:
    """What the person asked beyond the secret's name. Holds no values."""

    mode: Mode = Mode.PLANNED
    revoke_sessions: bool | None = None
    """Delete the Auth sessions and refresh tokens in the apply step. None: the mode's
    default (on for compromise rotations of secrets that sign sessions)."""
    phase: Phase | None = None
    """jwt-signing-key: the phase to run (the engine decides it from JWT_KEYS and its
    record; compromise rotations replace the key in one go)."""

    def sessions_revoked(self, secret: Secret) -> bool:
        if not secret.signs_sessions:
            return False
        if self.revoke_sessions is None:
            return self.mode is Mode.COMPROMISE or secret.compromise_only
        return self.revoke_sessions

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode.value,
            "revoke_sessions": self.revoke_sessions,
            "phase": self.phase.value if self.phase else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RotationOptions:
        data = data or {}
        phase = data.get("phase")
        return cls(
            mode=Mode(data.get("mode", Mode.PLANNED.value)),
            revoke_sessions=data.get("revoke_sessions"),
            phase=Phase(phase) if phase else None,
        )


class Risk(StrEnum):
    """How much a rotation can break; CRITICAL needs the approval quorum (see module doc)."""

    NORMAL = "normal"
    CRITICAL = "critical"


DB_ROLES = SHARED_PASSWORD_ROLES


REALTIME_DB_ENC_KEY_REASON = (
    "REALTIME_DB_ENC_KEY encrypts rows Realtime stored; changing it destroys them"
)

_API_KEY_ROLES = {"ANON_KEY": "anon", "SERVICE_ROLE_KEY": "service_role"}
_JWK_SET_KEYS = ("JWT_KEYS", "JWT_JWKS")

_Generator = Callable[
    ["Secret", Mapping[str, str], Mapping[str, str], int, "RotationOptions"], dict[str, str]
]


@dataclass(frozen=True)
class Secret:
    """One rotatable secret (or, for `all`, a group of them). Holds names, never values."""

    name: str
    title: str
    env_keys: tuple[str, ...]
    """Every `.env` key a rotation may change (JWT_KEYS/JWT_JWKS only when configured)."""
    required_keys: tuple[str, ...]
    """Keys that must be present and non-empty in `.env` for the secret to be rotatable."""
    impact: str
    """What people feel, in a sentence or three, for the plan and the user notice."""
    logs_out_users: bool
    risk: Risk
    source: Source = Source.GENERATED
    given_keys: tuple[str, ...] = ()
    """For GIVEN secrets: the keys a person must supply."""
    db_roles: tuple[str, ...] = ()
    """Database roles whose password is the secret (postgres-password, all)."""
    refused: str | None = None
    """Why rotator will not rotate it; None when it will."""
    members: tuple[str, ...] = ()
    """For `all`: the catalogue entries it covers, in the order they are applied."""
    checklist: tuple[str, ...] = ()
    """What people must do after the rotation, for the security checklist."""
    optional_given_keys: tuple[str, ...] = ()
    """For GIVEN secrets: keys a person may supply; absent or empty means "keep"."""
    resets_pooler_tenant: bool = False
    """The Supavisor tenant in `_supabase._supavisor` must be dropped so the pooler
    recreates it (it stores the Postgres password, encrypted with VAULT_ENC_KEY)."""
    signs_sessions: bool = False
    """It signs (or verifies) users' access tokens: a compromise rotation of it revokes
    their sessions, since refresh tokens outlive any key."""
    precondition: Callable[[Mapping[str, str]], str] | None = None
    """Beyond `required_keys`: returns why the secret is not configured, "" when it is."""
    updates_analytics_users: bool = False
    """Logflare copied the first public token into `_analytics.users.api_key`, which it
    still accepts: the apply step replaces it there too."""
    compromise_only: bool = False
    """Always a compromise rotation (`all`: everything, after a leak): every old credential
    dies at once and sessions are revoked unless the person keeps them."""

    @property
    def rotatable(self) -> bool:
        return self.refused is None

    # --- configuration ------------------------------------------------------------------

    def missing_keys(self, current: Mapping[str, str]) -> list[str]:
        """The required keys that are absent or empty in `current`."""
        return [key for key in self.required_keys if not current.get(key)]

    def unconfigured_reason(self, current: Mapping[str, str]) -> str:
        """Why `current` cannot rotate this secret, or "" when it can."""
        missing = self.missing_keys(current)
        if missing:
            return f".env has no value for {', '.join(missing)}"
        return self.precondition(current) if self.precondition is not None else ""

    def is_configured(self, current: Mapping[str, str]) -> bool:
        return not self.unconfigured_reason(current)

    def _member_secrets(self) -> list[Secret]:
        return [CATALOGUE[name] for name in self.members]

    def skipped_members(self, current: Mapping[str, str]) -> list[str]:
        """For `all`: the members a rotation leaves out because their keys are not configured.

        Empty for every other secret. GIVEN and refused secrets are never members.
        """
        return [m.name for m in self._member_secrets() if not m.is_configured(current)]

    def configured_members(self, current: Mapping[str, str]) -> list[str]:
        """For `all`: the members a rotation of `current` covers, in order."""
        return [m.name for m in self._member_secrets() if m.is_configured(current)]

    def changed_keys(self, current: Mapping[str, str]) -> tuple[str, ...]:
        """The env keys a rotation of `current` will change (names only, for the plan)."""
        if self.members:
            keys: list[str] = []
            for name in self.configured_members(current):
                keys.extend(CATALOGUE[name].changed_keys(current))
            return tuple(keys)
        if self.name == "jwt-secret":
            return tuple(
                k for k in self.env_keys if k not in _JWK_SET_KEYS or _has_oct(current.get(k))
            )
        return self.env_keys

    # --- new values ---------------------------------------------------------------------

    def new_values(
        self,
        current: Mapping[str, str],
        given: Mapping[str, str] | None = None,
        *,
        now: int | None = None,
        options: RotationOptions | None = None,
    ) -> dict[str, str]:
        """The keys that change and their new values, checked by `validate`.

        Args:
            current: the `.env` values as compose reads them (unquoted).
            given: for GIVEN secrets, the values a person supplied.
            now: the `iat` of new API keys (default: the clock).

        Raises:
            SecretRefused: the secret is refused (realtime-db-enc-key).
            SecretNotConfigured: a required key is absent or empty.
            InvalidSecretValue: a given value, or a current one the rotation builds on
                (api-keys: JWT_SECRET), breaks a rule; or given values for a GENERATED secret.
        """
        if self.refused is not None:
            raise SecretRefused(self.refused)
        why = self.unconfigured_reason(current)
        if why:
            raise SecretNotConfigured(f"{self.name} is not configured: {why}")
        if self.source is Source.GENERATED and given:
            key = next(iter(given))
            raise InvalidSecretValue(key, f"{self.name} is generated by rotator, not given")
        issued_at = int(time.time()) if now is None else now
        options = options or RotationOptions()

        if self.members:
            # Each member builds on what the ones before it made: the signing key's sets
            # take the new JWT_SECRET that jwt-secret put in them.
            values: dict[str, str] = {}
            for name in self.configured_members(current):
                member = CATALOGUE[name]
                values |= member.new_values(
                    {**current, **values}, now=issued_at, options=_member_options(member)
                )
        else:
            values = _GENERATORS[self.name](self, current, given or {}, issued_at, options)
        self.validate(values, current=current)
        return values

    # --- rules --------------------------------------------------------------------------

    def validate(
        self, values: Mapping[str, str], *, current: Mapping[str, str] | None = None
    ) -> None:
        """Check each value against every consumer's rules; names the key and rule only.

        `current` (the `.env`) adds the cross-checks: every value differs from its current
        one; API keys verify with JWT_SECRET (taken from `values`, else from `current`:
        api-keys needs it there); JWT_KEYS/JWT_JWKS keep every non-`oct` key of the
        current set.

        Raises:
            InvalidSecretValue: the first broken rule, or a key this secret does not change.
            SecretRefused: the secret is refused.
        """
        if self.refused is not None:
            raise SecretRefused(self.refused)
        if self.members:
            self._validate_members(values, current)
            return
        for key in values:
            if key not in self.env_keys:
                raise InvalidSecretValue(key, f"is not a key that {self.name} changes")
        context = {**(current or {}), **values}
        for key, value in values.items():
            if current is not None and current.get(key) == value:
                raise InvalidSecretValue(key, "must differ from the current value")
        if self.name == "jwt-signing-key":
            _check_signing_key(context, current)
            return
        for key, value in values.items():
            if key in _API_KEY_ROLES:
                _check_api_key(key, value, context)
            elif key in _JWK_SET_KEYS:
                _check_jwk_set(key, value, context, (current or {}).get(key))
            else:
                secretgen.check(key, value)
        _check_distinct(
            values, context, ("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN")
        )
        _check_distinct(values, context, ("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"))

    def _validate_members(
        self, values: Mapping[str, str], current: Mapping[str, str] | None
    ) -> None:
        # A key two members change (JWT_KEYS: jwt-secret's oct key, the signing key's EC
        # key) is judged by the last one, which made its final value.
        configured = set(self.configured_members(current)) if current is not None else None
        owner = {
            key: m
            for m in self._member_secrets()
            if configured is None or m.name in configured
            for key in m.env_keys
        }
        groups: dict[str, dict[str, str]] = {}
        for key, value in values.items():
            if key not in owner:
                raise InvalidSecretValue(key, f"is not a key that {self.name} changes")
            groups.setdefault(owner[key].name, {})[key] = value
        context = {**(current or {}), **values}
        for name, group in groups.items():
            # Values another member changed are context here, not "the current ones".
            others = {k: v for k, v in context.items() if k not in group}
            CATALOGUE[name].validate(group, current={**others, **_current_of(group, current)})


def _member_options(member: Secret) -> RotationOptions:
    """`all` is the complete rotation after a leak: the signing key is replaced at once."""
    if member.name == "jwt-signing-key":
        return RotationOptions(mode=Mode.COMPROMISE, phase=Phase.REPLACE)
    return RotationOptions(mode=Mode.COMPROMISE)


def _current_of(group: Mapping[str, str], current: Mapping[str, str] | None) -> dict[str, str]:
    return {key: current[key] for key in group if current is not None and key in current}


# --- checks of composite values -------------------------------------------------------------


def _has_oct(jwk_json: str | None) -> bool:
    if not jwk_json:
        return False
    try:
        return bool(oct_secrets(jwk_json))
    except JwkError:
        return True  # malformed: let new_values report it by key


def _check_api_key(key: str, token: str, context: Mapping[str, str]) -> None:
    secret = context.get("JWT_SECRET")
    if not secret:
        raise InvalidSecretValue(key, "cannot be checked without JWT_SECRET")
    secretgen.check("JWT_SECRET", secret)
    try:
        header = jwt.get_unverified_header(token)
        claims = decode_hs256(token, secret, check_times=False)
    except jwt.PyJWTError:
        raise InvalidSecretValue(key, "must be an HS256 JWT signed with JWT_SECRET") from None
    if header != {"alg": "HS256", "typ": "JWT"}:
        raise InvalidSecretValue(key, 'must have the header {"alg":"HS256","typ":"JWT"}')
    role = _API_KEY_ROLES[key]
    if set(claims) != {"role", "iss", "iat", "exp"} or claims["role"] != role:
        raise InvalidSecretValue(key, f"must carry exactly role={role}, iss, iat and exp")
    if claims["iss"] != "supabase":
        raise InvalidSecretValue(key, "must have iss=supabase")
    iat, exp = claims["iat"], claims["exp"]
    if not (_is_int(iat) and _is_int(exp)) or exp <= max(iat, time.time()):
        raise InvalidSecretValue(key, "must have integer iat and exp, exp in the future")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_jwk_set(key: str, value: str, context: Mapping[str, str], old: str | None) -> None:
    try:
        doc = json.loads(value)
    except ValueError:
        raise InvalidSecretValue(key, "must be valid JSON") from None
    if key == "JWT_KEYS" and not isinstance(doc, list):
        raise InvalidSecretValue(key, "must be a JSON array of JWKs")
    if key == "JWT_JWKS" and not (isinstance(doc, dict) and isinstance(doc.get("keys"), list)):
        raise InvalidSecretValue(key, 'must be a JSON object with a "keys" array')
    keys: list[Any] = doc if isinstance(doc, list) else doc["keys"]
    if not all(isinstance(k, dict) and isinstance(k.get("kty"), str) for k in keys):
        raise InvalidSecretValue(key, 'must hold only JWK objects with a "kty"')
    octs = [k for k in keys if k["kty"] == "oct"]
    if len(octs) != 1:
        raise InvalidSecretValue(key, 'must hold exactly one "oct" key')
    secret = context.get("JWT_SECRET")
    if not secret or octs[0].get("k") != b64url(secret.encode("utf-8")):
        raise InvalidSecretValue(key, 'its "oct" key must hold JWT_SECRET')
    if key == "JWT_JWKS" and any("d" in k for k in keys):
        raise InvalidSecretValue(key, "must not hold a private key (d)")
    if old:
        try:
            old_doc = json.loads(old)
            old_keys = old_doc if isinstance(old_doc, list) else old_doc["keys"]
        except (ValueError, KeyError, TypeError):
            return
        kept = [k for k in keys if k["kty"] != "oct"]
        if kept != [k for k in old_keys if not (isinstance(k, dict) and k.get("kty") == "oct")]:
            raise InvalidSecretValue(key, "must keep every non-oct key of the current set")


def _check_signing_key(context: Mapping[str, str], current: Mapping[str, str] | None) -> None:
    """The signing key's four values as a whole: JWT_KEYS is one GoTrue starts with and
    still holds JWT_SECRET; JWT_JWKS is exactly its public half; the asymmetric API keys
    verify with JWT_JWKS and carry the signing key's kid."""
    try:
        keys = KeySet.parse(context.get("JWT_KEYS", ""))
    except JwkError as exc:
        raise InvalidSecretValue("JWT_KEYS", str(exc)) from None
    secret = context.get("JWT_SECRET", "")
    for key in _JWK_SET_KEYS:
        try:
            octs = oct_secrets(context.get(key, ""))
        except JwkError as exc:
            raise InvalidSecretValue(key, str(exc)) from None
        if octs and octs != [b64url(secret.encode("utf-8"))]:
            raise InvalidSecretValue(key, 'its "oct" key must hold JWT_SECRET')
    try:
        published = json.loads(context.get("JWT_JWKS", ""))
    except ValueError:
        raise InvalidSecretValue("JWT_JWKS", "must be valid JSON") from None
    if published != json.loads(keys.jwt_jwks()):
        raise InvalidSecretValue("JWT_JWKS", "must be exactly the public half of JWT_KEYS")
    signer = kid_of(keys.signing)
    for key, role in ASYMMETRIC_KEYS.items():
        token = context.get(key)
        if not token:
            continue
        try:
            claims = verify_es256(token, context["JWT_JWKS"])
        except JwkError as exc:
            raise InvalidSecretValue(key, str(exc)) from None
        if claims.get("role") != role or jwt.get_unverified_header(token).get("kid") != signer:
            raise InvalidSecretValue(key, f"must carry role={role} and the signing key's kid")


def _check_distinct(
    values: Mapping[str, str], context: Mapping[str, str], pair: tuple[str, str]
) -> None:
    first, second = pair
    if first not in values and second not in values:
        return
    if context.get(first) and context.get(first) == context.get(second):
        raise InvalidSecretValue(second, f"must differ from {first}")


# --- generators, one per catalogue entry -----------------------------------------------------


def _generate_simple(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    return {key: secretgen.fresh(key, current.get(key)) for key in secret.env_keys}


def _generate_jwt_secret(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    new_secret = secretgen.fresh("JWT_SECRET", current.get("JWT_SECRET"))
    values = {
        "JWT_SECRET": new_secret,
        "ANON_KEY": sign_hs256(api_key_payload("anon", now), new_secret),
        "SERVICE_ROLE_KEY": sign_hs256(api_key_payload("service_role", now), new_secret),
    }
    for key in _JWK_SET_KEYS:
        old = current.get(key)
        if not old:
            continue
        try:
            replaced = replace_oct_key(old, new_secret)
        except JwkError as exc:
            raise InvalidSecretValue(key, f"cannot be rewritten: {exc}") from None
        if replaced != old:
            values[key] = replaced
    return values


def _generate_api_keys(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    jwt_secret = current["JWT_SECRET"]
    try:
        secretgen.check("JWT_SECRET", jwt_secret)
    except InvalidSecretValue as exc:
        raise InvalidSecretValue(
            "JWT_SECRET", f"{exc.rule}; rotate jwt-secret instead of api-keys"
        ) from None
    return {
        "ANON_KEY": sign_hs256(api_key_payload("anon", now), jwt_secret),
        "SERVICE_ROLE_KEY": sign_hs256(api_key_payload("service_role", now), jwt_secret),
    }


def _generate_opaque_keys(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    def fresh(key: str, prefix: str) -> str:
        while True:
            value = make_opaque_key(prefix)
            if value != current.get(key):
                return value

    return {
        "SUPABASE_PUBLISHABLE_KEY": fresh("SUPABASE_PUBLISHABLE_KEY", _PUBLISHABLE_PREFIX),
        "SUPABASE_SECRET_KEY": fresh("SUPABASE_SECRET_KEY", _SECRET_PREFIX),
    }


def _generate_logflare(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    public = secretgen.fresh(
        "LOGFLARE_PUBLIC_ACCESS_TOKEN", current.get("LOGFLARE_PUBLIC_ACCESS_TOKEN")
    )
    private = public
    while private == public:
        private = secretgen.fresh(
            "LOGFLARE_PRIVATE_ACCESS_TOKEN", current.get("LOGFLARE_PRIVATE_ACCESS_TOKEN")
        )
    return {"LOGFLARE_PUBLIC_ACCESS_TOKEN": public, "LOGFLARE_PRIVATE_ACCESS_TOKEN": private}


def _take_given(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    allowed = secret.given_keys + secret.optional_given_keys
    for key in given:
        if key not in allowed:
            raise InvalidSecretValue(key, f"is not a value {secret.name} takes")
    values: dict[str, str] = {}
    for key in secret.given_keys:
        if key not in given:
            raise InvalidSecretValue(key, "must be given (rotator cannot issue it)")
        values[key] = given[key]
    for key in secret.optional_given_keys:
        value = given.get(key)
        if value and value != current.get(key):
            values[key] = value
    return values


def _generate_signing_key(
    secret: Secret,
    current: Mapping[str, str],
    given: Mapping[str, str],
    now: int,
    options: RotationOptions,
) -> dict[str, str]:
    """JWT_KEYS/JWT_JWKS (and the asymmetric API keys, once a new key signs) for one phase."""
    keys = _key_set(current)
    phase = options.phase or (Phase.REPLACE if options.mode is Mode.COMPROMISE else None)
    if phase is None:
        raise InvalidSecretValue("JWT_KEYS", "needs a phase (standby, rotate or revoke)")
    current_kids = [kid_of(k) for k in keys.asymmetric]
    if phase is Phase.STANDBY:
        if len(current_kids) != 1:
            raise InvalidSecretValue(
                "JWT_KEYS", "already holds a second key: finish that rotation first"
            )
        after = keys.standby(new_ec_key())
    elif phase is Phase.ROTATE:
        standby = [k for k in current_kids if k != kid_of(keys.signing)]
        if len(standby) != 1:
            raise InvalidSecretValue("JWT_KEYS", "has no standby key to promote")
        after = keys.promote(standby[0])
    elif phase is Phase.REVOKE:
        if len(current_kids) < 2:
            raise InvalidSecretValue("JWT_KEYS", "holds no old key to revoke")
        after = keys.only(kid_of(keys.signing))
    else:
        fresh = new_ec_key()
        after = KeySet((*keys.asymmetric, fresh, *keys.others)).only(kid_of(fresh))
    values = {"JWT_KEYS": after.jwt_keys(), "JWT_JWKS": after.jwt_jwks()}
    if kid_of(after.signing) != kid_of(keys.signing):
        values |= api_keys_signed_by(after.signing, now)
    return {key: value for key, value in values.items() if value != current.get(key)}


def _key_set(current: Mapping[str, str]) -> KeySet:
    try:
        return KeySet.parse(current.get("JWT_KEYS", ""))
    except JwkError as exc:
        raise InvalidSecretValue("JWT_KEYS", str(exc)) from None


def _asymmetric_signer(current: Mapping[str, str]) -> str:
    """jwt-signing-key's precondition: JWT_KEYS holds an asymmetric key that signs."""
    if not current.get("JWT_KEYS"):
        return "no JWT_KEYS in .env (asymmetric keys are not set up: add-new-auth-keys.sh)"
    try:
        keys = KeySet.parse(current["JWT_KEYS"])
    except JwkError as exc:
        return str(exc)
    if not keys.has_asymmetric_signer:
        return "JWT_KEYS has no asymmetric signing key (only the legacy secret signs)"
    return ""


_GENERATORS: dict[str, _Generator] = {
    "postgres-password": _generate_simple,
    "jwt-secret": _generate_jwt_secret,
    "api-keys": _generate_api_keys,
    "dashboard-password": _generate_simple,
    "s3-protocol-keys": _generate_simple,
    "smtp": _take_given,
    "openai-api-key": _take_given,
    "secret-key-base": _generate_simple,
    "vault-enc-key": _generate_simple,
    "pg-meta-crypto-key": _generate_simple,
    "logflare-tokens": _generate_logflare,
    "opaque-api-keys": _generate_opaque_keys,
    "jwt-signing-key": _generate_signing_key,
}


# --- the catalogue -----------------------------------------------------------------------------

_STORE = "Store the new value in your password manager and delete copies of the old one"

_ENTRIES: tuple[Secret, ...] = (
    Secret(
        name="postgres-password",
        title="Postgres password",
        env_keys=("POSTGRES_PASSWORD",),
        required_keys=("POSTGRES_PASSWORD",),
        impact=(
            "Every service reconnects to the database: the API, Auth, Storage, Realtime, "
            "the Dashboard and the connection pooler are unavailable for a short while. "
            "Anything outside the stack that connects to Postgres with this password "
            "(directly or through the pooler) stops working until updated. "
            "Signed-in users stay signed in."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        db_roles=DB_ROLES,
        resets_pooler_tenant=True,
        checklist=(
            "Update every tool and app outside the stack that connects to Postgres "
            "(directly or through the pooler) with the new password",
            _STORE,
        ),
    ),
    Secret(
        name="jwt-secret",
        title="JWT secret, with the anon and service-role keys signed with it",
        env_keys=("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY", "JWT_KEYS", "JWT_JWKS"),
        required_keys=("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"),
        impact=(
            "Access tokens signed with the old secret stop verifying. Every client holding "
            "the old anon or service-role key stops working until updated, and Storage "
            "signed URLs made before stop working. The API services restart."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        signs_sessions=True,
        checklist=(
            "Update client apps with the new anon key",
            "Update servers, functions and tools outside the stack with the new service-role key",
            "If custom SQL reads current_setting('app.settings.jwt_secret') (installs older "
            "than 0.8.2), update that setting: rotator does not",
            "If .env leaked, rotate jwt-signing-key too: the asymmetric key is a secret of its own",
            _STORE,
        ),
    ),
    Secret(
        name="jwt-signing-key",
        title="Asymmetric JWT signing key (ES256), with the API keys it signs",
        env_keys=SIGNING_KEYS,
        required_keys=("JWT_KEYS", "JWT_JWKS"),
        impact=(
            "Planned, in three phases: standby publishes the new key, rotate makes it sign, "
            "revoke removes the old one once its tokens have expired; no token stops "
            "working early, and each phase restarts the services that verify tokens, one "
            "after another. Compromise: tokens signed with the old key stop verifying at once."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        signs_sessions=True,
        precondition=_asymmetric_signer,
        checklist=(
            "Update backends outside the stack that verify tokens with a copy of JWT_JWKS "
            "(or that cache /auth/v1/.well-known/jwks.json)",
            _STORE,
        ),
    ),
    Secret(
        name="api-keys",
        title="Anon and service-role keys, re-signed with the current JWT secret",
        env_keys=("ANON_KEY", "SERVICE_ROLE_KEY"),
        required_keys=("JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"),
        impact=(
            "Every client holding the old anon or service-role key is refused by the API "
            "gateway until updated. Signed-in users stay signed in. The old keys still verify "
            "as bearer tokens behind the gateway until they expire: after a leak, rotate "
            "jwt-secret instead."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        checklist=(
            "Update client apps with the new anon key",
            "Update servers, functions and tools outside the stack with the new service-role key",
            "If the service-role key leaked, rotate jwt-secret too: the old key keeps "
            "verifying until it expires",
        ),
    ),
    Secret(
        name="dashboard-password",
        title="Dashboard (Studio) password",
        env_keys=("DASHBOARD_PASSWORD",),
        required_keys=("DASHBOARD_PASSWORD",),
        impact=(
            "People using the Dashboard must sign in again with the new password. The API "
            "gateway is recreated: API requests fail for a few seconds."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        checklist=(
            "Share the new Dashboard password with the people who need it, through your "
            "password manager",
            _STORE,
        ),
    ),
    Secret(
        name="s3-protocol-keys",
        title="Storage S3 protocol access keys",
        env_keys=("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET"),
        required_keys=("S3_PROTOCOL_ACCESS_KEY_ID", "S3_PROTOCOL_ACCESS_KEY_SECRET"),
        impact=(
            "S3 clients using the old access key are refused until updated. Storage restarts: "
            "uploads and downloads fail for a few seconds."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        checklist=(
            "Update S3 clients of /storage/v1/s3 with the new access key ID and secret",
            _STORE,
        ),
    ),
    Secret(
        name="smtp",
        title="SMTP credentials (Auth e-mail)",
        env_keys=("SMTP_USER", "SMTP_PASS"),
        required_keys=("SMTP_HOST", "SMTP_PASS"),
        impact=(
            "Auth restarts: sign-in and sign-up fail for a few seconds. Confirmation, "
            "magic-link and password-reset e-mails then use the new credentials; if they are "
            "wrong, no e-mail is sent."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        source=Source.GIVEN,
        given_keys=("SMTP_PASS",),
        optional_given_keys=("SMTP_USER",),
        checklist=(
            "Send a test e-mail (a password reset) and check it arrives",
            "Revoke the old SMTP credentials at your e-mail provider",
            _STORE,
        ),
    ),
    Secret(
        name="openai-api-key",
        title="OpenAI API key (Studio's AI assistant)",
        env_keys=("OPENAI_API_KEY",),
        required_keys=("OPENAI_API_KEY",),
        impact=(
            "The Dashboard restarts and is unavailable for a few seconds; its AI assistant "
            "then uses the new key."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        source=Source.GIVEN,
        given_keys=("OPENAI_API_KEY",),
        checklist=(
            "Revoke the old key in your OpenAI account",
            _STORE,
        ),
    ),
    Secret(
        name="secret-key-base",
        title="Realtime and Supavisor secret key base",
        env_keys=("SECRET_KEY_BASE",),
        required_keys=("SECRET_KEY_BASE",),
        impact=(
            "Realtime and the connection pooler restart: Realtime clients reconnect and "
            "pooled database connections are cut."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        checklist=("Check that Realtime clients reconnect", _STORE),
    ),
    Secret(
        name="vault-enc-key",
        title="Supavisor encryption key (VAULT_ENC_KEY)",
        env_keys=("VAULT_ENC_KEY",),
        required_keys=("VAULT_ENC_KEY",),
        impact=(
            "The connection pooler's tenant, encrypted with this key, is recreated and the "
            "pooler restarts: connections through the pooler are cut for a short while."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        resets_pooler_tenant=True,
        checklist=("Check that connections through the pooler work again", _STORE),
    ),
    Secret(
        name="pg-meta-crypto-key",
        title="Studio and postgres-meta crypto key",
        env_keys=("PG_META_CRYPTO_KEY",),
        required_keys=("PG_META_CRYPTO_KEY",),
        impact=(
            "The Dashboard and postgres-meta restart: the SQL editor and table views are "
            "unavailable for a few seconds."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        checklist=("Reload open Dashboard tabs", _STORE),
    ),
    Secret(
        name="logflare-tokens",
        title="Logflare (analytics) access tokens",
        env_keys=("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN"),
        required_keys=("LOGFLARE_PUBLIC_ACCESS_TOKEN", "LOGFLARE_PRIVATE_ACCESS_TOKEN"),
        impact=(
            "With the logs override in use, analytics, Vector and the Dashboard restart: log "
            "ingestion pauses and the Dashboard's log pages are unavailable for a short while. "
            "The first public token, which Logflare also keeps as its user's legacy API key, "
            "is replaced there too."
        ),
        logs_out_users=False,
        risk=Risk.NORMAL,
        updates_analytics_users=True,
        checklist=(
            "Update tools outside the stack that query Logflare with the private token",
            "Check that the Dashboard's log pages show new entries",
            _STORE,
        ),
    ),
    Secret(
        name="opaque-api-keys",
        title="Publishable and secret API keys (sb_...)",
        env_keys=("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"),
        required_keys=("SUPABASE_PUBLISHABLE_KEY", "SUPABASE_SECRET_KEY"),
        impact=(
            "Every client holding the old publishable or secret key is refused by the API "
            "gateway until updated. Signed-in users stay signed in. The anon and service-role "
            "keys and the asymmetric key pair do not change."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        checklist=(
            "Update client apps with the new publishable key",
            "Update servers, functions and tools outside the stack with the new secret key",
            _STORE,
        ),
    ),
)

_ALL_MEMBERS = (
    "postgres-password",
    "jwt-secret",
    "jwt-signing-key",
    "opaque-api-keys",
    "dashboard-password",
    "secret-key-base",
    "vault-enc-key",
    "pg-meta-crypto-key",
    "logflare-tokens",
    "s3-protocol-keys",
)
"""The complete rotation: generate-keys.sh's set (api-keys is inside jwt-secret), the
asymmetric signing key (replaced at once) and the opaque keys; the database first, as
everything else reconnects to it. Not smtp (given) nor realtime-db-enc-key (refused)."""


def _build_all(entries: Mapping[str, Secret]) -> Secret:
    members = [entries[name] for name in _ALL_MEMBERS]
    checklist: list[str] = []
    for member in members:
        checklist.extend(item for item in member.checklist if item not in checklist)
    return Secret(
        name="all",
        title="Every secret: the complete rotation",
        env_keys=tuple(key for m in members for key in m.env_keys),
        required_keys=("POSTGRES_PASSWORD", "JWT_SECRET", "ANON_KEY", "SERVICE_ROLE_KEY"),
        impact=(
            "Every client holding an old API key stops working until updated, and the whole "
            "stack restarts. SMTP credentials (issued by your provider) and "
            "REALTIME_DB_ENC_KEY are not changed."
        ),
        logs_out_users=False,
        risk=Risk.CRITICAL,
        db_roles=DB_ROLES,
        resets_pooler_tenant=True,
        signs_sessions=True,
        updates_analytics_users=True,
        compromise_only=True,
        members=_ALL_MEMBERS,
        checklist=tuple(checklist),
    )


_REALTIME_DB_ENC_KEY = Secret(
    name="realtime-db-enc-key",
    title="Realtime database encryption key",
    env_keys=("REALTIME_DB_ENC_KEY",),
    required_keys=("REALTIME_DB_ENC_KEY",),
    impact=f"Not rotatable: {REALTIME_DB_ENC_KEY_REASON}.",
    logs_out_users=False,
    risk=Risk.CRITICAL,
    refused=REALTIME_DB_ENC_KEY_REASON,
)


def _build_catalogue() -> Mapping[str, Secret]:
    entries = {s.name: s for s in _ENTRIES}
    entries["all"] = _build_all(entries)
    entries[_REALTIME_DB_ENC_KEY.name] = _REALTIME_DB_ENC_KEY
    return MappingProxyType(entries)


CATALOGUE: Mapping[str, Secret] = _build_catalogue()
"""Every secret by name, rotatable ones first in help order, then the refused one."""


def secret_names() -> list[str]:
    """The rotatable names, for help text."""
    return [name for name, s in CATALOGUE.items() if s.rotatable]


def get_secret(name: str) -> Secret:
    """The catalogue entry called `name` (refused entries included).

    Raises:
        UnknownSecret: no such name; the message lists the valid ones.
    """
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownSecret(
            # The name is not echoed: a value pasted by mistake must not travel on.
            f"unknown secret; choose one of: {', '.join(secret_names())}"
        ) from None


_PHASE_IMPACTS = {
    Phase.STANDBY: (
        "The new key is published beside the current one, which still signs: no token "
        "changes. The services that verify tokens restart one after another (a few seconds "
        "each), Auth last."
    ),
    Phase.ROTATE: (
        "New tokens are signed with the new key; tokens from the old one keep verifying "
        "until they expire. Auth, the API gateway and the Dashboard restart (a few seconds "
        "each)."
    ),
    Phase.REVOKE: (
        "The old key is removed; every token it signed has expired by now. The services that "
        "verify tokens restart one after another, Auth last."
    ),
    Phase.REPLACE: (
        "Access tokens signed with the old key stop verifying at once; the gateway's internal "
        "asymmetric keys are re-signed, so clients' sb_ keys keep working. Auth, the "
        "verifying services, the gateway and the Dashboard restart."
    ),
}

SESSIONS_KEPT = (
    "Signed-in users stay signed in: their apps fetch new access tokens by themselves "
    "(sessions and refresh tokens are rows in the database, untouched)."
)
SESSIONS_REVOKED = (
    "Every signed-in user is signed out and must sign in again: all sessions and refresh "
    "tokens are deleted, so a stolen one is useless."
)


def describe_impact(secret: Secret, options: RotationOptions) -> tuple[str, bool]:
    """What users notice for this rotation, and whether it signs them out."""
    text = secret.impact
    if secret.name == "jwt-signing-key":
        phase = options.phase or (Phase.REPLACE if options.mode is Mode.COMPROMISE else None)
        text = _PHASE_IMPACTS[phase] if phase is not None else text
    if not secret.signs_sessions:
        return text, False
    if options.sessions_revoked(secret):
        return f"{SESSIONS_REVOKED} {text}", True
    return f"{text} {SESSIONS_KEPT}", False
