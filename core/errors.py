"""Every error rotator raises on purpose, in one hierarchy.

    RotatorError
    ├── InputError                 bad input: nothing was changed (exit code 2)
    │   ├── UnknownSecret
    │   ├── UnknownDeployment
    │   ├── EnvFileError           a malformed .env, with its line number
    │   ├── ComposeError           compose refuses the files
    │   │   └── ComposeUnsupported no compose command, or compose v1
    │   ├── SecretInMountedFile    a file a container mounts holds a value being rotated
    │   ├── SecretNotConfigured    the secret's keys are absent from .env
    │   ├── SecretRefused          rotating it would destroy data
    │   ├── InvalidSecretValue     a given value breaks a consumer's rules
    │   └── RotationInProgress     another rotation is open on this deployment
    ├── PreflightFailed            the deployment is not in a state to rotate (exit 2)
    │   └── DatabaseRefused        the database refuses the password in .env
    ├── StepFailed                 a step failed; the engine rolls back (exit 1)
    │   ├── DatabaseError
    │   ├── RuntimeFailure         compose or docker failed, or a service never turned healthy
    │   └── VerificationFailed
    └── RecoveryNeeded             left half-done; `rotator recover` finishes it (exit 3)

Messages name keys, roles and services, never values: psycopg and docker
messages can quote statements or environments, so adapters translate them
into these classes before they travel anywhere.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NEEDS_RECOVERY = 3


class RotatorError(Exception):
    """Base class. `exit_code` is what the `rotator` command exits with."""

    exit_code = EXIT_FAILED


class InputError(RotatorError):
    """The request or the files are wrong; nothing was changed."""

    exit_code = EXIT_USAGE


class UnknownSecret(InputError):
    pass


class UnknownDeployment(InputError):
    pass


class EnvFileError(InputError):
    """A `.env` line that cannot be read. Carries the line number, never the line."""

    def __init__(self, path: str, line_no: int, reason: str) -> None:
        super().__init__(f"{path}:{line_no}: {reason}")
        self.path = path
        self.line_no = line_no
        self.reason = reason


class ComposeError(InputError):
    pass


class ComposeUnsupported(ComposeError):
    """The compose command is missing, or is compose v1: rotator needs v2."""


class SecretInMountedFile(InputError):
    """A file a container mounts holds a literal copy of a value being rotated.

    Rewriting `.env` would leave the old value in force there. Names files and keys only.
    """


class SecretNotConfigured(InputError):
    pass


class SecretRefused(InputError):
    pass


class InvalidSecretValue(InputError):
    """A value that would break a consumer. Names the key and the rule only."""

    def __init__(self, key: str, rule: str) -> None:
        super().__init__(f"{key}: {rule}")
        self.key = key
        self.rule = rule


class RotationInProgress(InputError):
    pass


class PreflightFailed(RotatorError):
    """The deployment is not ready; nothing was changed."""

    exit_code = EXIT_USAGE


class DatabaseRefused(PreflightFailed):
    """The database refuses the credentials rotator was given."""


class StepFailed(RotatorError):
    """A step of the protocol failed. `step` names it; `service` names a container if any."""

    def __init__(self, message: str, *, step: str = "", service: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.service = service


class DatabaseError(StepFailed):
    """The database could not be asked, or a statement failed. `retryable`: the server is
    not accepting logins yet (starting up, refusing TCP), so waiting may help."""

    def __init__(
        self, message: str, *, step: str = "", service: str = "", retryable: bool = False
    ) -> None:
        super().__init__(message, step=step, service=service)
        self.retryable = retryable


class RuntimeFailure(StepFailed):
    """Compose or Docker failed, or a service did not turn healthy.

    `logs` holds the service's last log lines with secrets already redacted.
    """

    def __init__(self, message: str, *, step: str = "", service: str = "", logs: str = "") -> None:
        super().__init__(message, step=step, service=service)
        self.logs = logs


class VerificationFailed(StepFailed):
    pass


class RecoveryNeeded(RotatorError):
    """The rotation stopped half-way and could not roll back by itself."""

    exit_code = EXIT_NEEDS_RECOVERY
