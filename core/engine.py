"""The rotation engine: the protocol of DESIGN.md, step by step.

    preflight -> backup -> stage -> apply -> commit -> restart -> verify -> finish
                                        \\________ any failure ________/-> roll back

Every step is idempotent and bracketed by journal writes, so a process killed
at any instant leaves a journal that `recover` can finish or undo. The moves
below (`_set_database`, `_set_env`, `_restart`) each bring one part of the
deployment to a target state whatever state it is in, which is what makes
both rollback and recovery the same few calls in another order.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from core.adapters.postgres import (
    DbAddress,
    accepts_password,
    change_shared_password,
    connect_as,
    reset_pooler_tenant,
    shared_password_script,
)
from core.audit import AuditLog, new_record
from core.catalogue import Secret, Source, get_secret
from core.checklist import ChecklistItem, build_checklist
from core.deployment import Deployment
from core.envfile import EnvFile, backup, write_atomic
from core.errors import (
    DatabaseError,
    DatabaseRefused,
    InputError,
    PreflightFailed,
    RecoveryNeeded,
    RotationInProgress,
    RotatorError,
    StepFailed,
    VerificationFailed,
)
from core.journal import JournalState, Phase, Step
from core.lock import deployment_lock
from core.plan import Plan, make_plan
from core.progress import (
    CheckResult,
    Event,
    Note,
    Progress,
    StepFinished,
    StepStarted,
    emit_safely,
)
from core.progress import (
    StepFailed as StepFailedEvent,
)
from core.redact import redact
from core.restart import recreate_in_order
from core.runtime import Runtime
from core.verify import (
    ADMIN_ROLE,
    check_db_passwords,
    check_no_stragglers,
    check_services_ready,
    db_address,
    gateway_probes,
    gateway_url,
    run_probe,
)

PASSWORD_KEY = "POSTGRES_PASSWORD"  # noqa: S105 - a key name, not a password


class Outcome(StrEnum):
    FINISHED = "finished"
    ROLLED_BACK = "rolled_back"


@dataclass
class RotationResult:
    rotation_id: str
    secret: str
    outcome: Outcome
    plan: Plan
    checks: list[CheckResult] = field(default_factory=list)
    checklist: list[ChecklistItem] = field(default_factory=list)
    error: str = ""
    """Why it rolled back, in words; empty when it finished."""
    failed_service: str = ""
    failed_logs: str = ""
    """The failed service's last log lines, secrets redacted."""


def new_rotation_id() -> str:
    return "r-" + secrets.token_hex(4)


class Engine:
    def __init__(
        self,
        deployment: Deployment,
        runtime: Runtime,
        progress: Progress,
        *,
        actor: str,
        http_probes: bool = True,
        via_socket: bool = False,
        confirm: Callable[[Plan], bool] | None = None,
        on_staged: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.deployment = deployment
        self.runtime = runtime
        self.progress = progress
        self.actor = actor
        self.http_probes = http_probes
        self.via_socket = via_socket
        """Change role passwords through psql on the db container's local socket, which
        needs no password: the way out when the database refuses the one in .env."""
        self.on_staged = on_staged
        """Told the old and new values once they are staged (or read back by recover),
        so a caller that reports elsewhere (Slack) can redact them."""
        self.confirm = confirm
        self.journal = deployment.journal
        self.audit = AuditLog(deployment.state_dir / "audit.log")

    # ----------------------------------------------------------------- use cases

    def rotate(
        self,
        secret_name: str,
        *,
        given: Mapping[str, str] | None = None,
        rotation_id: str | None = None,
    ) -> RotationResult:
        secret = get_secret(secret_name)
        rotation_id = rotation_id or new_rotation_id()
        self.deployment.ensure_state_dir()
        with deployment_lock(self.deployment.state_dir):
            if self.journal.exists():
                open_id = self.journal.load().rotation_id
                raise RotationInProgress(
                    f"rotation {open_id} is still open on {self.deployment.directory}; "
                    "run `rotator recover` to finish or undo it first"
                )
            current = self.deployment.values()
            new = secret.new_values(current, self._given(secret, given))
            plan = make_plan(self.deployment, secret, new)
            if self.confirm is not None and not self.confirm(plan):
                raise InputError("cancelled; nothing was changed")
            state = JournalState(
                rotation_id=rotation_id,
                secret=secret.name,
                actor=self.actor,
                plan=plan.to_json(),
                old={key: current.get(key, "") for key in new},
                new=dict(new),
            )
            try:
                with self._step(state, Step.PREFLIGHT, persist=False):
                    state.ready_services = self._preflight(plan, current, new)
            except RotatorError as exc:
                self._audit(state, "refused", str(exc))
                raise
            return self._forward(state, plan)

    def recover(self) -> RotationResult:
        """Finish or undo the open rotation, deciding from the journal and the database."""
        with deployment_lock(self.deployment.ensure_state_dir()):
            if not self.journal.exists():
                raise InputError(f"no rotation is open on {self.deployment.directory}")
            state = self.journal.load()
            self._tell_staged(state)
            plan = Plan.from_json(state.plan)
            try:
                self._start_stopped(plan)
                db_holds = self._database_holds(state, plan)
            except (StepFailed, DatabaseRefused) as exc:
                # Nothing was finished or undone: exit 3 (still half-done), not 1.
                raise RecoveryNeeded(
                    f"cannot recover rotation {state.rotation_id} yet: {exc}; the journal "
                    "is kept: run `rotator recover` again once that is fixed"
                ) from None
            emit_safely(
                self.progress,
                Note(
                    f"rotation {state.rotation_id} ({state.secret}) stopped in "
                    f"{state.current or (state.done[-1] if state.done else 'preflight')}"
                    + (f"; the database accepts the {db_holds} password" if db_holds else "")
                ),
            )
            committed = state.reached(Step.COMMIT) and state.phase is Phase.FORWARD
            if committed:
                emit_safely(self.progress, Note("the new values were committed: finishing"))
                return self._forward(state, plan, resume=True)
            emit_safely(self.progress, Note("the new values were not committed: undoing"))
            return self._roll_back(state, plan, reason="recovered after an interrupted rotation")

    def _start_stopped(self, plan: Plan) -> None:
        """Bring back planned services a killed run left without a running container.

        A process killed while compose recreated a level can leave that level stopped
        (the old container stopped, the new one not yet started): the database among
        them, which recovery must ask. They start from the current .env, level by level;
        finishing or undoing then recreates them again as planned.
        """
        states = self.runtime.services(self.deployment.compose)
        for level in plan.restart_levels:
            down = [s for s in level if s not in states or states[s].status != "running"]
            if down:
                self._emit(Note("starting services left stopped: " + ", ".join(down)))
                env = self.deployment.values()
                self.runtime.recreate(self.deployment.compose, env, down)
                self.runtime.wait_ready(self.deployment.compose, env, down)

    # ------------------------------------------------------------------ protocol

    def _forward(self, state: JournalState, plan: Plan, *, resume: bool = False) -> RotationResult:
        try:
            if not resume:
                with self._step(state, Step.BACKUP):
                    state.backup = str(
                        backup(self.deployment.env_path, self.deployment.state_dir / "backups")
                    )
                with self._step(state, Step.STAGE, detail=f"{len(state.new)} new value(s)"):
                    self._tell_staged(state)  # the journal write around this step stages
            with self._step(state, Step.APPLY, detail=self._apply_detail(plan)):
                self._set_database(plan, target=state.new, other=state.old)
            with self._step(state, Step.COMMIT, detail="keys: " + ", ".join(plan.env_keys)):
                self._set_env(state.new)
            with self._step(state, Step.RESTART, detail=self._restart_detail(plan)):
                self._restart(plan)
            with self._step(state, Step.VERIFY):
                checks = self._verify(plan, accepted=state.new, refused=state.old, state=state)
        except StepFailed as exc:
            return self._roll_back(state, plan, reason=str(exc), failure=exc)
        except (RotatorError, OSError) as exc:
            # Past staging every failure is a step failure: something may have changed.
            step = state.current or "a step"
            reason = f"{step} failed: {exc if isinstance(exc, RotatorError) else _os_error(exc)}"
            return self._roll_back(state, plan, reason=reason)
        self._emit(StepStarted(Step.FINISH.value))
        self.journal.remove()
        self._audit(state, "finished", f"services recreated: {', '.join(plan.services) or 'none'}")
        self._emit(StepFinished(Step.FINISH.value, "journal removed, audit record written"))
        return RotationResult(
            rotation_id=state.rotation_id,
            secret=state.secret,
            outcome=Outcome.FINISHED,
            plan=plan,
            checks=checks,
            checklist=build_checklist(plan, checks, state.backup),
        )

    def _roll_back(
        self, state: JournalState, plan: Plan, *, reason: str, failure: StepFailed | None = None
    ) -> RotationResult:
        state.phase = Phase.ROLLING_BACK
        self.journal.save(state)
        self._emit(Note(f"rolling back: {reason}"))
        try:
            self._emit(StepStarted("rollback", "restoring the old values"))
            self._set_database(plan, target=state.old, other=state.new)
            self._set_env(state.old)
            # Apply (and undoing it) resets the pooler's stored tenant, which only a
            # recreated pooler puts back: once apply may have run, recreate as after commit.
            applied = state.reached(Step.APPLY) or state.current == Step.APPLY.value
            if (
                state.reached(Step.COMMIT)
                or state.current in (Step.COMMIT.value, Step.RESTART.value)
                or (applied and plan.resets_pooler_tenant)
            ):
                self._restart(plan)
            checks = self._verify(plan, accepted=state.old, refused=state.new, state=state)
            self._emit(StepFinished("rollback", "the old values are back in place"))
        except (RotatorError, OSError) as exc:
            why = exc if isinstance(exc, RotatorError) else _os_error(exc)
            self._audit(state, "needs_recovery", f"rollback failed: {why}")
            raise RecoveryNeeded(
                f"rotation {state.rotation_id} failed ({reason}) and rolling back failed too "
                f"({why}); the journal is kept: run `rotator recover` once the cause is fixed"
            ) from None
        self.journal.remove()
        self._audit(state, "rolled_back", reason)
        return RotationResult(
            rotation_id=state.rotation_id,
            secret=state.secret,
            outcome=Outcome.ROLLED_BACK,
            plan=plan,
            checks=checks,
            error=reason,
            failed_service=getattr(failure, "service", ""),
            failed_logs=redact(
                getattr(failure, "logs", ""), [*state.old.values(), *state.new.values()]
            ),
        )

    # --------------------------------------------------------------- the moves

    def _preflight(
        self, plan: Plan, current: Mapping[str, str], new: Mapping[str, str]
    ) -> list[str]:
        """Refuse, changing nothing, unless the rotation can go through; returns the
        services ready now, which verification expects ready afterwards."""
        self.deployment.env.replace(new)  # every key has a line to rewrite, or a clear error
        self._check_writable()
        shadowed = sorted(key for key in plan.env_keys if key in os.environ)
        if shadowed:
            raise PreflightFailed(
                f"{', '.join(shadowed)} set in rotator's own environment; compose would use "
                "it instead of .env. Unset it and try again. Nothing was changed."
            )
        # The database first: when it refuses the password in .env, the services that
        # log in with it are unhealthy too, and the way out below is what to show.
        repairing = bool(plan.db_roles) and self.via_socket
        if repairing:
            self._psql(b"SELECT 1;\n")
        elif plan.db_roles or plan.resets_pooler_tenant:
            try:
                connect_as(self._db_address(), ADMIN_ROLE, current[PASSWORD_KEY]).close()
            except DatabaseRefused as exc:
                raise DatabaseRefused(
                    f"{exc}. The POSTGRES_PASSWORD in .env and the database already disagree, "
                    "so rotating from here would lock every service out. Way out: set the "
                    "password through the db container's local socket, which needs no "
                    "password: `rotator rotate postgres-password --via-socket`. "
                    "Nothing was changed."
                ) from None
        ready = check_services_ready(self.deployment, self.runtime, plan.services)
        if not ready.ok and not repairing:
            # Through the socket, services refused by the database are expected: the
            # rotation recreates them all and verifies they come back healthy.
            raise PreflightFailed(f"{ready.evidence}; fix them first. Nothing was changed.")
        states = self.runtime.services(self.deployment.compose)
        return sorted({*plan.services, *(s for s, st in states.items() if st.is_ready)})

    def _check_writable(self) -> None:
        """The .env directory and the state directory take a new file (atomic writes need
        one), before anything changes: a full disk must not strand a rotation half-way."""
        for directory in (self.deployment.directory, self.deployment.state_dir):
            probe = directory / f".rotator-write-test-{os.getpid()}"
            try:
                probe.write_bytes(b"\0" * 4096)
                probe.unlink()
            except OSError as exc:
                raise PreflightFailed(
                    f"cannot write in {directory} ({_os_error(exc)}); nothing was changed"
                ) from None

    def _set_database(
        self, plan: Plan, *, target: Mapping[str, str], other: Mapping[str, str]
    ) -> None:
        """Make the database roles accept target[POSTGRES_PASSWORD], whatever they accept
        now; or, when only VAULT_ENC_KEY changes, reset the pooler's stored tenant."""
        env = self.deployment.values()
        host, port = env.get("POSTGRES_HOST") or "db", int(env.get("POSTGRES_PORT") or "5432")
        if not plan.db_roles or PASSWORD_KEY not in target:
            if plan.resets_pooler_tenant:
                reset_pooler_tenant(self._db_address(), ADMIN_ROLE, env[PASSWORD_KEY])
            return
        wanted, previous = target[PASSWORD_KEY], other[PASSWORD_KEY]
        if self.via_socket:
            script = shared_password_script(
                wanted, plan.db_roles, analytics_host=host, analytics_port=port
            )
            self._psql(script.encode(), secrets=[wanted, previous])
            return
        address = self._db_address()
        if accepts_password(address, ADMIN_ROLE, wanted):
            # Already there: the change is one transaction, so the admin role accepting
            # the target means every role does. Skipping it spares the pooler a reset.
            return
        change = change_shared_password(
            address,
            ADMIN_ROLE,
            previous,
            wanted,
            plan.db_roles,
            analytics_host=host,
            analytics_port=port,
        )
        if change.missing:
            self._emit(Note("roles not in this database, skipped: " + ", ".join(change.missing)))

    def _psql(self, script: bytes, secrets: Sequence[str] = ()) -> None:
        """Run a psql script as supabase_admin over the db container's local socket.

        A failed statement's CONTEXT would quote it, values included: terse verbosity
        drops that, and the output is redacted of `secrets` and .env's values besides.
        """
        compose = self.deployment.compose
        host = self.deployment.values().get("POSTGRES_HOST") or "db"
        service = host if host in compose.service_names() else "db"
        argv = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", ADMIN_ROLE, "-d", "_supabase"]
        script = b"\\set VERBOSITY terse\n" + script
        code, output = self.runtime.exec_in(compose, service, argv, stdin=script)
        if code != 0:
            known = [*secrets, *self.deployment.values().values()]
            text = redact(output.decode(errors="replace"), known)
            raise DatabaseError(
                f"psql in the {service} container failed (exit {code}): {text.strip()[-500:]}"
            )

    def _set_env(self, values: Mapping[str, str]) -> None:
        # Read again rather than trust the copy from preflight: someone may have edited
        # .env during a long rotation, and those edits must survive.
        current = EnvFile.read(self.deployment.env_path)
        if all(current.get(key) == value for key, value in values.items()):
            return
        write_atomic(self.deployment.env_path, current.replace(values).render())
        self.deployment = self.deployment.reload()

    def _restart(self, plan: Plan) -> None:
        recreate_in_order(
            self.runtime,
            self.deployment.compose,
            self.deployment.values(),
            plan.services,
            announce=lambda services: self._emit(Note("recreating " + ", ".join(services))),
        )

    def _verify(
        self,
        plan: Plan,
        *,
        accepted: Mapping[str, str],
        refused: Mapping[str, str] | None,
        state: JournalState,
    ) -> list[CheckResult]:
        # Services that were down before the rotation (an operator's stopped imgproxy)
        # are not this rotation's to judge; the planned ones and the ready ones are.
        expected = state.ready_services or None
        # After a rollback the accepted values are the old ones: say so in the report.
        accepted_is, refused_is = ("old", "new") if accepted is state.old else ("new", "old")
        checks = [check_services_ready(self.deployment, self.runtime, expected)]
        if refused is not None:
            changed = {k: v for k, v in refused.items() if v and accepted.get(k) != v}
            checks.append(
                check_no_stragglers(self.deployment, self.runtime, changed, stale_is=refused_is)
            )
        if plan.db_roles and PASSWORD_KEY in accepted:
            old = refused.get(PASSWORD_KEY) if refused else None
            checks += check_db_passwords(
                self._db_address(),
                plan.db_roles,
                accepted[PASSWORD_KEY],
                old,
                accepted_is=accepted_is,
            )
        if self.http_probes:
            env = self.deployment.values()
            probes = gateway_probes(
                refused or {},
                accepted,
                dashboard_user=env.get("DASHBOARD_USERNAME", ""),
                old_is=refused_is,
            )
            checks += [run_probe(gateway_url(env), probe) for probe in probes]
        for check in checks:
            self._emit(check)
        failed = [c for c in checks if not c.ok]
        if failed:
            raise VerificationFailed(
                "verification failed: " + "; ".join(f"{c.name} ({c.evidence})" for c in failed),
                step=Step.VERIFY.value,
            )
        return checks

    def _database_holds(self, state: JournalState, plan: Plan) -> str:
        """'new', 'old' or '' (neither, or no database in this rotation)."""
        if not plan.db_roles or PASSWORD_KEY not in state.new:
            return ""
        address = self._db_address()
        for label, values in (("new", state.new), ("old", state.old)):
            if accepts_password(address, ADMIN_ROLE, values[PASSWORD_KEY]):
                return label
        raise DatabaseRefused(
            "the database accepts neither the old nor the new password for "
            f"{ADMIN_ROLE}; reset it through the db container's local socket "
            "(docker compose exec db psql -U supabase_admin), then run `rotator recover` again"
        )

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _step(
        self, state: JournalState, step: Step, *, detail: str = "", persist: bool = True
    ) -> Iterator[None]:
        self._emit(StepStarted(step.value, detail))
        if persist:
            self.journal.start(state, step)
        started = time.monotonic()
        try:
            yield
        except RotatorError as exc:
            self._emit(StepFailedEvent(step.value, str(exc)))
            if isinstance(exc, StepFailed) and not exc.step:
                exc.step = step.value
            raise
        if persist:
            self.journal.complete(state, step)
        self._emit(StepFinished(step.value, detail, time.monotonic() - started))

    def _tell_staged(self, state: JournalState) -> None:
        if self.on_staged is not None:
            self.on_staged([*state.old.values(), *state.new.values()])

    def _emit(self, event: Event) -> None:
        emit_safely(self.progress, event)

    def _db_address(self) -> DbAddress:
        return db_address(self.deployment, self.runtime)

    def _given(self, secret: Secret, given: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if secret.source is Source.GIVEN and not given:
            raise InputError(
                f"{secret.name} values are issued by your provider, not generated: supply "
                f"{', '.join(secret.given_keys)} (rotator rotate {secret.name} --values-file FILE)"
            )
        return given

    def _apply_detail(self, plan: Plan) -> str:
        if plan.db_roles:
            return f"ALTER ROLE for {len(plan.db_roles)} roles in one transaction"
        return "nothing to change outside .env"

    def _restart_detail(self, plan: Plan) -> str:
        return " → ".join(", ".join(level) for level in plan.restart_levels) or "no services"

    def _audit(self, state: JournalState, result: str, detail: str) -> None:
        self.audit.append(
            new_record(state.rotation_id, self.actor, "rotate", state.secret, result, detail)
        )


def _os_error(exc: OSError) -> str:
    """An OSError in words, without the path's contents: its errno name and message."""
    return exc.strerror or type(exc).__name__
