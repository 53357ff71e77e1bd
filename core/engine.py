"""The rotation engine: the protocol of DESIGN.md, step by step.

    preflight -> backup -> stage -> apply -> commit -> restart -> verify -> finish
                                        \\________ any failure ________/-> roll back

Every step is idempotent and bracketed by journal writes, so a process killed
at any instant leaves a journal that `recover` can finish or undo. The moves
below (`_set_database`, `_set_env`, `_restart`) each bring one part of the
deployment to a target state whatever state it is in, which is what makes
both rollback and recovery the same few calls in another order.

Once the journal exists, every way out that leaves it (a failed rollback, Ctrl-C,
a database that accepts neither password) is RecoveryNeeded: exit code 3 and the
`rotator recover` command to run.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from core.adapters.postgres import (
    DbAddress,
    PasswordChange,
    accepts_password,
    analytics_users_holding,
    change_shared_password,
    connect_as,
    password_evidence,
    replace_analytics_user_key,
    reset_pooler_tenant,
    revoke_sessions,
    sessions_before,
    shared_password_script,
    wait_until_accepting,
)
from core.audit import AuditLog, new_record
from core.backups import prune
from core.catalogue import RotationOptions, Secret, Source, get_secret
from core.checklist import ChecklistItem, Evidence, build_checklist
from core.consistency import refuse_inconsistent
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
    RuntimeFailure,
    StepFailed,
    VerificationFailed,
)
from core.journal import JournalState, Step
from core.journal import Phase as JournalPhase
from core.key_schedule import record_phase, with_phase
from core.lock import deployment_lock
from core.plan import Plan, make_plan
from core.pooler import pooler_service, update_pooler_credentials
from core.probes import Probe, ProbeSettings, SkippedProbe, probes_for
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
from core.signing_keys import Phase
from core.verify import (
    ADMIN_ROLE,
    check_db_passwords,
    check_no_stragglers,
    check_services_ready,
    db_address,
)

PASSWORD_KEY = "POSTGRES_PASSWORD"  # noqa: S105 - a key name, not a password

READ_ONLY_ROLE = "supabase_read_only_user"
"""Upstream leaves it out of the shared password; some installs give it that password
anyway. It changes with the others exactly when the current password logs in as it."""

PROBE_SETTLE_S = 60.0
"""How long verification gives a just-recreated service that answers "not up yet" (a
service without a health check is only known to run, not to serve)."""

DB_READY_TIMEOUT_S = 180.0
"""How long recovery waits for a (re)started database to accept logins."""


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
    next_step: str = ""
    """What to run next, when the rotation has more phases (jwt-signing-key)."""


def new_rotation_id() -> str:
    return "r-" + secrets.token_hex(4)


def recover_command(directory: Path) -> str:
    return f"rotator recover --project {directory}"


@dataclass
class _Outcome:
    """What a step did, filled in by the step: its line in the report."""

    detail: str = ""


class Engine:
    def __init__(
        self,
        deployment: Deployment,
        runtime: Runtime,
        progress: Progress,
        *,
        actor: str,
        probes: ProbeSettings | None = None,
        via_socket: bool = False,
        confirm: Callable[[Plan], bool] | None = None,
        ask: Callable[[str], bool] | None = None,
        on_staged: Callable[[list[str]], None] | None = None,
        backup_grace_s: float = 0.0,
    ) -> None:
        self.deployment = deployment
        self.runtime = runtime
        self.progress = progress
        self.actor = actor
        self.probe_settings = probes
        """Where the probes go; None: upstream's ports on this host (ProbeSettings)."""
        self.via_socket = via_socket
        """Change role passwords through psql on the db container's local socket, which
        needs no password: the way out when the database refuses the one in .env."""
        self.on_staged = on_staged
        """Told the old and new values once they are staged (or read back by recover),
        so a caller that reports elsewhere (Slack) can redact them."""
        self.confirm = confirm
        self.ask = ask
        """Asks a person a yes/no question (recover, before using the socket); None: no
        one to ask, so the answer is no unless `via_socket` already said yes."""
        self.backup_grace_s = backup_grace_s
        self.journal = deployment.journal
        self.audit = AuditLog(deployment.state_dir / "audit.log")

    # ----------------------------------------------------------------- use cases

    def rotate(
        self,
        secret_name: str,
        *,
        given: Mapping[str, str] | None = None,
        rotation_id: str | None = None,
        options: RotationOptions | None = None,
    ) -> RotationResult:
        secret = get_secret(secret_name)
        options = options or RotationOptions()
        rotation_id = rotation_id or new_rotation_id()
        self.deployment.ensure_state_dir()
        with deployment_lock(self.deployment.state_dir), self._interruptible():
            if self.journal.exists():
                open_id = self.journal.load().rotation_id
                raise RotationInProgress(
                    f"rotation {open_id} is still open on {self.deployment.directory}; "
                    f"run `{recover_command(self.deployment.directory)}` to finish or undo it"
                )
            # Read again now that the lock is held: a rotation that finished while this one
            # waited changed .env, and undoing this one later must not undo that one.
            self.deployment = self.deployment.reload()
            current = self.deployment.values()
            options = with_phase(secret, options, self.deployment.state_dir, current)
            new = secret.new_values(current, self._given(secret, given), options=options)
            plan = make_plan(self.deployment, secret, new, options)
            if self.confirm is not None and not self.confirm(plan):
                raise InputError("cancelled; nothing was changed")
            state = JournalState(
                rotation_id=rotation_id,
                secret=secret.name,
                actor=self.actor,
                plan=plan.to_json(),
                old={key: current.get(key, "") for key in new},
                new=dict(new),
                db_roles=list(plan.db_roles),
            )
            try:
                with self._step(state, Step.PREFLIGHT, persist=False) as done:
                    done.detail = self._preflight(plan, current, state)
            except RotatorError as exc:
                self._audit(state, "refused", str(exc))
                raise
            return self._forward(state, plan)

    def recover(self) -> RotationResult:
        """Finish or undo the open rotation, deciding from the journal and the database."""
        with deployment_lock(self.deployment.ensure_state_dir()), self._interruptible():
            if not self.journal.exists():
                raise InputError(f"no rotation is open on {self.deployment.directory}")
            self.deployment = self.deployment.reload()
            state = self.journal.load()
            self._tell_staged(state)
            plan = Plan.from_json(state.plan)
            committed = state.reached(Step.COMMIT) and state.phase is JournalPhase.FORWARD
            target = state.new if committed else state.old
            try:
                self._bring_back(plan)
                db_holds = self._database_holds(state, plan, target)
            except (StepFailed, DatabaseRefused) as exc:
                # Nothing was finished or undone: exit 3 (still half-done), not 1.
                raise RecoveryNeeded(
                    f"cannot recover rotation {state.rotation_id} yet: {exc}; the journal "
                    f"is kept: run `{recover_command(self.deployment.directory)}` again once "
                    "that is fixed"
                ) from None
            stopped_in = state.current or (state.done[-1] if state.done else "preflight")
            self._emit(
                Note(
                    f"rotation {state.rotation_id} ({state.secret}) stopped in {stopped_in}"
                    + (f"; the database accepts the {db_holds} password" if db_holds else "")
                )
            )
            if committed:
                self._emit(Note("the new values were committed: finishing"))
                return self._forward(state, plan, resume=True)
            self._emit(Note("the new values were not committed: undoing"))
            return self._roll_back(state, plan, reason="recovered after an interrupted rotation")

    # ------------------------------------------------------------------ protocol

    def _forward(self, state: JournalState, plan: Plan, *, resume: bool = False) -> RotationResult:
        try:
            if not resume:
                with self._step(state, Step.BACKUP) as done:
                    path = backup(
                        self.deployment.env_path,
                        self.deployment.state_dir / "backups",
                        label=state.rotation_id,
                    )
                    state.backup = str(path)
                    done.detail = f"{path.name} (mode 0600)"
                with self._step(state, Step.STAGE) as done:
                    self._tell_staged(state)  # the journal write around this step stages
                    done.detail = f"{len(state.new)} new value(s) in the journal (mode 0600)"
            with self._step(state, Step.APPLY) as done:
                done.detail = self._apply(plan, state, target=state.new, other=state.old)
            with self._step(state, Step.COMMIT) as done:
                self._set_env(state.new)
                done.detail = "keys written: " + ", ".join(plan.env_keys)
            resumed_restart = resume and state.restart_started_at > 0
            if not resumed_restart:
                # On Docker's clock, which container creation times are read on; saved
                # as the step starts.
                state.restart_started_at = self.runtime.now()
            with self._step(state, Step.RESTART) as done:
                kept = self._recreated_already(state, plan) if resumed_restart else []
                done.detail = self._restart(plan, kept=kept)
            with self._step(state, Step.VERIFY) as done:
                checks = self._verify(plan, accepted=state.new, refused=state.old, state=state)
                done.detail = _verify_summary(checks)
        except StepFailed as exc:
            return self._roll_back(state, plan, reason=str(exc), failure=exc)
        except (RotatorError, OSError) as exc:
            # Past staging every failure is a step failure: something may have changed.
            step = state.current or "a step"
            reason = f"{step} failed: {exc if isinstance(exc, RotatorError) else _os_error(exc)}"
            return self._roll_back(state, plan, reason=reason)
        self._emit(StepStarted(Step.FINISH.value))
        checklist = build_checklist(plan, checks, self._evidence(state))
        next_step = self._record_signing_phase(plan, state)
        self.journal.remove()
        self._audit(state, "finished", f"services recreated: {', '.join(plan.services) or 'none'}")
        self._emit(StepFinished(Step.FINISH.value, "journal removed, audit record written"))
        self._prune_backups()
        return RotationResult(
            rotation_id=state.rotation_id,
            secret=state.secret,
            outcome=Outcome.FINISHED,
            plan=plan,
            checks=checks,
            checklist=checklist,
            next_step=next_step,
        )

    def _roll_back(
        self, state: JournalState, plan: Plan, *, reason: str, failure: StepFailed | None = None
    ) -> RotationResult:
        self._emit(Note(f"rolling back: {reason}"))
        try:
            state.phase = JournalPhase.ROLLING_BACK
            self.journal.save(state)
            self._emit(StepStarted("rollback", "restoring the old values"))
            # Only what apply may have touched is put back: before it, the database, the
            # pooler's tenant and the rest are as they were, and "putting back" the pooler
            # (dropping its tenant) would break a pooler nobody recreates.
            applied = state.reached(Step.APPLY) or state.current == Step.APPLY.value
            if applied:
                self._apply(plan, state, target=state.old, other=state.new)
            self._set_env(state.old)
            # Apply (and undoing it) can reset the pooler's stored tenant, which only a
            # recreated pooler puts back: once apply may have run, recreate as after commit.
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
            self._audit_safely(state, "needs_recovery", f"rollback failed: {why}")
            raise RecoveryNeeded(
                f"rotation {state.rotation_id} failed ({reason}) and rolling back failed too "
                f"({why}); the journal is kept: run "
                f"`{recover_command(self.deployment.directory)}` once the cause is fixed"
            ) from None
        self.journal.remove()
        self._audit(state, "rolled_back", reason)
        self._prune_backups()
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

    # ----------------------------------------------------------------- preflight

    def _preflight(self, plan: Plan, current: Mapping[str, str], state: JournalState) -> str:
        """Refuse, changing nothing, unless the rotation can go through. Records in `state`
        the services ready now (verification expects them ready afterwards) and the roles
        the apply step changes. Returns the step's line for the report."""
        self.deployment.env.replace(state.new)  # every key has a line to rewrite, or an error
        refuse_inconsistent(current, plan.env_keys)
        self._check_writable()
        # The database first: when it refuses the password in .env, the services that
        # log in with it are unhealthy too, and the way out below is what to show.
        repairing = bool(plan.db_roles) and self.via_socket
        said = []
        if repairing:
            self._psql(b"SELECT 1;\n")
            said.append(f"{READ_ONLY_ROLE} left alone (not checked through the socket)")
        elif plan.db_roles or plan.resets_pooler_tenant:
            address = self._db_address()
            try:
                connect_as(address, ADMIN_ROLE, current[PASSWORD_KEY]).close()
            except DatabaseRefused as exc:
                raise DatabaseRefused(
                    f"{exc}. The POSTGRES_PASSWORD in .env and the database already disagree, "
                    "so rotating from here would lock every service out. Way out: set the "
                    "password through the db container's local socket, which needs no "
                    "password: `rotator rotate postgres-password --via-socket`. "
                    "Nothing was changed."
                ) from None
            if plan.db_roles:
                said.append(self._decide_read_only_role(address, current[PASSWORD_KEY], state))
        ready = check_services_ready(self.deployment, self.runtime, plan.services)
        if ready.failed and not repairing:
            # Through the socket, services refused by the database are expected: the
            # rotation recreates them all and verifies they come back healthy.
            raise PreflightFailed(f"{ready.evidence}; fix them first. Nothing was changed.")
        states = self.runtime.services(self.deployment.compose)
        state.ready_services = sorted(
            {*plan.services, *(s for s, st in states.items() if st.is_ready)}
        )
        if repairing:
            said.append("probes skipped: the database refuses the password in .env")
        else:
            said.append(self._preflight_probes(plan, current))
        for note in said:
            self._emit(Note(note))
        return f"{len(state.ready_services)} services ready"

    def _decide_read_only_role(self, address: DbAddress, password: str, state: JournalState) -> str:
        if READ_ONLY_ROLE in state.db_roles:
            return f"{READ_ONLY_ROLE} is in the plan"
        evidence = password_evidence(address, [READ_ONLY_ROLE], password, admin_password=password)
        seen = evidence[READ_ONLY_ROLE]
        if seen.accepts:
            state.db_roles.append(READ_ONLY_ROLE)
            return f"{READ_ONLY_ROLE} takes the current password ({seen.how}): it changes too"
        if seen.accepts is None:
            return f"{READ_ONLY_ROLE} left alone: {seen.how}"
        return f"{READ_ONLY_ROLE} left alone: it has its own password ({seen.how})"

    def _preflight_probes(self, plan: Plan, current: Mapping[str, str]) -> str:
        """Every probe verification will use, tried now with the current values."""
        probes = self._probes(plan.env_keys, accepted=current, refused=None, accepted_is="current")
        for probe in probes:
            result = probe.run()
            if not result.failed:
                continue
            if probe.unreachable(result):
                raise PreflightFailed(
                    f"probe {probe.name!r} cannot reach its target ({result.evidence}), so "
                    f"the rotation could not be verified. {probe.setting}. Nothing was changed."
                )
            raise PreflightFailed(
                f"probe {probe.name!r} failed with the current values ({result.evidence}): "
                "the deployment does not accept its own configuration, so a rotation could "
                f"not be verified. Fix that first, or: {probe.setting}. Nothing was changed."
            )
        ran = sum(not isinstance(probe, SkippedProbe) for probe in probes)
        return f"{ran} probe(s) passed with the current values" if ran else "no probes to try"

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

    # --------------------------------------------------------------- the moves

    def _apply(
        self,
        plan: Plan,
        state: JournalState,
        *,
        target: Mapping[str, str],
        other: Mapping[str, str],
    ) -> str:
        """Bring everything outside .env to `target`: the role passwords, the pooler's
        stored tenant, Logflare's legacy key; and, going forward in a rotation that revokes
        them, Auth's sessions. Each part is idempotent. Returns what was done."""
        done = [self._set_database(plan, state, target=target, other=other)]
        if plan.resets_pooler_tenant and not self.via_socket:
            done.append(self._set_pooler(plan, state, target))
        # From here on the database takes the target's password (when it has one).
        password = target.get(PASSWORD_KEY) or self.deployment.values()[PASSWORD_KEY]
        public = "LOGFLARE_PUBLIC_ACCESS_TOKEN"
        if plan.updates_analytics_users and target.get(public) and other.get(public):
            done.append(self._set_analytics_key(other[public], target[public], password))
        if plan.revokes_sessions and target is state.new:
            done.append(self._revoke_sessions(state, password))
        return "; ".join(part for part in done if part) or "nothing to change outside .env"

    def _set_database(
        self,
        plan: Plan,
        state: JournalState,
        *,
        target: Mapping[str, str],
        other: Mapping[str, str],
    ) -> str:
        """Make the database roles accept target[POSTGRES_PASSWORD], whatever they accept
        now. Returns what was done, for the report."""
        roles = state.db_roles or list(plan.db_roles)
        if not roles or PASSWORD_KEY not in target:
            return ""
        env = self.deployment.values()
        host, port = env.get("POSTGRES_HOST") or "db", int(env.get("POSTGRES_PORT") or "5432")
        wanted, previous = target[PASSWORD_KEY], other[PASSWORD_KEY]
        if self.via_socket:
            return self._set_database_via_socket(roles, wanted, previous, host, port)
        address = self._db_address()
        if accepts_password(address, ADMIN_ROLE, wanted):
            # Already there: the change is one transaction, so the admin role accepting
            # the target means every role does.
            return f"the database already accepts that password ({ADMIN_ROLE}): no change"
        change = change_shared_password(
            address,
            ADMIN_ROLE,
            previous,
            wanted,
            roles,
            analytics_host=host,
            analytics_port=port,
            reset_pooler=False,  # _set_pooler: through Supavisor's API where it can
        )
        return _describe_change(change)

    def _set_pooler(self, plan: Plan, state: JournalState, target: Mapping[str, str]) -> str:
        """The pooler's stored tenant holds the database password, encrypted with
        VAULT_ENC_KEY: update it through Supavisor's API when only the password changes,
        else drop it (upstream's way) so the recreated pooler makes it again."""
        env = self.deployment.values()
        password = target.get(PASSWORD_KEY) or env[PASSWORD_KEY]
        compose = self.deployment.compose
        service = pooler_service(compose, env)
        running = self.runtime.services(compose)
        why = ""
        if "VAULT_ENC_KEY" in plan.env_keys:
            why = "VAULT_ENC_KEY changes, so the stored tenant cannot be kept"
        elif service is None or service not in running or running[service].status != "running":
            why = "no running pooler to ask"
        elif running[service].health == "starting" and not self._pooler_turns_ready(service):
            why = "the pooler did not turn ready"
        else:
            update = update_pooler_credentials(
                self.runtime,
                self.deployment.compose,
                service,
                tenant=env.get("POOLER_TENANT_ID", ""),
                password=password,
            )
            if update.updated:
                return update.detail
            why = update.detail
        # Journaled before the drop: a pooler created earlier never makes the tenant
        # again, so recovery must not keep it (_recreated_already).
        state.pooler_reset_at = self.runtime.now()
        self.journal.save(state)
        reset = reset_pooler_tenant(self._db_address(), ADMIN_ROLE, password)
        return f"pooler tenant reset ({why})" if reset else f"no pooler schema to reset ({why})"

    def _pooler_turns_ready(self, service: str) -> bool:
        """Wait for a pooler still starting (a recovery finds one compose just made): its
        API can then keep the tenant, where dropping it would cost it another restart."""
        try:
            self.runtime.wait_ready(
                self.deployment.compose, self.deployment.values(), [service], run_checks=True
            )
        except RuntimeFailure:
            return False
        return True

    def _set_analytics_key(self, old: str, new: str, password: str) -> str:
        changed = replace_analytics_user_key(self._db_address(), ADMIN_ROLE, password, old, new)
        if changed is None:
            return "no _analytics.users table (Logflare not installed)"
        return f"Logflare's legacy user key replaced in {changed} row(s)"

    def _revoke_sessions(self, state: JournalState, password: str) -> str:
        state.sessions_revoked_at = time.time()
        self.journal.save(state)
        revoked = revoke_sessions(self._db_address(), ADMIN_ROLE, password)
        if revoked is None:
            return "no auth schema: no session to revoke"
        if not revoked.sessions and not revoked.refresh_tokens:
            return "no session or refresh token existed: nobody was signed in"
        return (
            f"revoked {revoked.sessions} session(s) and {revoked.refresh_tokens} refresh "
            "token(s): everyone signs in again"
        )

    def _set_database_via_socket(
        self, roles: Sequence[str], wanted: str, previous: str, host: str, port: int
    ) -> str:
        script = shared_password_script(wanted, roles, analytics_host=host, analytics_port=port)
        self._psql(script.encode(), secrets=[wanted, previous])
        return f"ALTER ROLE for the existing ones of {len(roles)} roles, through the db socket"

    def _psql(self, script: bytes, secrets: Sequence[str] = ()) -> None:
        """Run a psql script as supabase_admin over the db container's local socket.

        A failed statement's CONTEXT would quote it, values included: terse verbosity
        drops that, and the output is redacted of `secrets` and .env's values besides.
        """
        compose = self.deployment.compose
        service = self._db_service()
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

    def _restart(self, plan: Plan, *, kept: Sequence[str] = ()) -> str:
        """Recreate the plan's services in order; `kept` ones were recreated from the
        current .env already (by an interrupted run) and are only waited for."""
        recreate_in_order(
            self.runtime,
            self.deployment.compose,
            self.deployment.values(),
            plan.services,
            announce=lambda services: self._emit(Note("recreating " + ", ".join(services))),
            after=dict(plan.restart_after),
            last=plan.restart_last,
            done=kept,
        )
        if not plan.services:
            return "none"
        fresh = [service for service in plan.services if service not in kept]
        detail = f"recreated and ready: {', '.join(fresh) or 'none'}"
        if kept:
            detail += f"; ready, recreated before the interruption: {', '.join(kept)}"
        return detail

    def _recreated_already(self, state: JournalState, plan: Plan) -> list[str]:
        """The plan's services an interrupted restart step already recreated from the
        committed .env (see Runtime.recreated_since): recreating them again would only
        take them down a second time."""
        # A pooler made before its stored tenant was dropped never makes it again: after
        # a drop only containers created later count, all of them (a pooler without
        # POOLER_TENANT_ID is not recognisable as one).
        since = max(state.restart_started_at, state.pooler_reset_at)
        kept = self.runtime.recreated_since(self.deployment.compose, plan.services, since)
        if kept:
            self._emit(Note("already recreated before the interruption: " + ", ".join(kept)))
        return kept

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
        roles = state.db_roles or list(plan.db_roles)
        if roles and PASSWORD_KEY in accepted:
            old = refused.get(PASSWORD_KEY) if refused else None
            checks += check_db_passwords(
                self._db_address(), roles, accepted[PASSWORD_KEY], old, accepted_is=accepted_is
            )
        if plan.revokes_sessions and state.sessions_revoked_at and accepted is state.new:
            checks.append(self._check_sessions_revoked(state.sessions_revoked_at))
        public = "LOGFLARE_PUBLIC_ACCESS_TOKEN"
        if plan.updates_analytics_users and refused and refused.get(public):
            checks.append(self._check_analytics_key(refused[public], refused_is))
        for probe in self._probes(
            plan.env_keys, accepted=accepted, refused=refused, accepted_is=accepted_is
        ):
            checks.append(probe.run(settle_s=PROBE_SETTLE_S))
        for check in checks:
            self._emit(check)
        failed = [c for c in checks if c.failed]
        if failed:
            raise VerificationFailed(
                "verification failed: " + "; ".join(f"{c.name} ({c.evidence})" for c in failed),
                step=Step.VERIFY.value,
            )
        if not any(c.ok is True for c in checks):
            # Nothing failed because nothing was looked at: that proves nothing either.
            raise VerificationFailed(
                "verification proved nothing: every check was not applicable ("
                + "; ".join(f"{c.name}: {c.evidence}" for c in checks)
                + ")",
                step=Step.VERIFY.value,
            )
        return checks

    def _check_sessions_revoked(self, since: float) -> CheckResult:
        name = "no session from before the rotation survives"
        left = sessions_before(
            self._db_address(), ADMIN_ROLE, self.deployment.values()[PASSWORD_KEY], since
        )
        if left is None:
            return CheckResult(name, None, "no auth schema in the database")
        ok = left.sessions == 0 and left.refresh_tokens == 0
        return CheckResult(
            name,
            ok,
            f"{left.sessions} session(s) and {left.refresh_tokens} refresh token(s) older "
            "than the revocation",
        )

    def _check_analytics_key(self, token: str, which: str) -> CheckResult:
        name = f"Logflare's legacy user key is not the {which} public token"
        holding = analytics_users_holding(
            self._db_address(), ADMIN_ROLE, self.deployment.values()[PASSWORD_KEY], token
        )
        if holding is None:
            return CheckResult(name, None, "no _analytics.users table")
        return CheckResult(name, holding == 0, f"{holding} user(s) still hold it")

    def _probes(
        self,
        keys: Sequence[str],
        *,
        accepted: Mapping[str, str],
        refused: Mapping[str, str] | None,
        accepted_is: str,
    ) -> list[Probe]:
        env = self.deployment.values()
        settings = self.probe_settings or ProbeSettings.for_deployment(env)
        return probes_for(
            keys,
            accepted=accepted,
            refused=refused,
            env=env,
            settings=settings,
            accepted_is=accepted_is,
        )

    # --------------------------------------------------------- signing-key phases

    def _record_signing_phase(self, plan: Plan, state: JournalState) -> str:
        """Note a finished signing-key phase; returns the next step to tell people."""
        changed = "JWT_KEYS" in state.new and "jwt-signing-key" in (plan.members or (plan.secret,))
        if not changed:
            return ""
        phase = Phase.REPLACE if plan.members else plan.rotation_options.phase
        if phase is None:
            return ""
        expiry = self.deployment.values().get("JWT_EXPIRY", "")
        record = record_phase(
            self.deployment.state_dir,
            phase,
            state.old["JWT_KEYS"],
            state.new["JWT_KEYS"],
            jwt_expiry_s=int(expiry) if expiry.isdigit() else None,
        )
        command = f"rotator rotate jwt-signing-key --project {self.deployment.directory}"
        if record is None:
            return ""
        if record.finished is Phase.STANDBY:
            return (
                f"next: `{command}` (rotate: the new key signs). Any time; wait 20 minutes "
                "first if something outside the stack caches the published JWKS."
            )
        when = datetime.fromtimestamp(record.revoke_after, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"next: `{command}` at {when} or later (revoke: the old key is removed)."

    # ------------------------------------------------------------------ recovery

    def _bring_back(self, plan: Plan) -> None:
        """Make every planned service exist and run again, whatever a killed run left.

        A process killed while compose recreated services can leave a service stopped,
        missing, or half-made (compose's temporary `<id>_<name>` container); the
        database among them, which recovery must ask. They are started from the current
        .env, the database first; finishing or undoing then recreates them as planned.
        """
        compose = self.deployment.compose
        db = self._db_service() if plan.db_roles or plan.resets_pooler_tenant else None
        wanted = list(
            dict.fromkeys([*([db] if db in compose.service_names() else []), *plan.services])
        )
        removed = self.runtime.remove_leftovers(compose, wanted)
        if removed:
            self._emit(Note("removed compose's half-made containers: " + ", ".join(removed)))
        states = self.runtime.services(compose)
        down = [s for s in wanted if s not in states or states[s].status != "running"]
        env = self.deployment.values()
        if db in down:
            self._emit(Note(f"starting the database ({db}), found {_state_of(states, db)}"))
            self.runtime.recreate(compose, env, [db])
            down.remove(db)
        if db is not None:
            self._emit(Note("waiting for the database to accept logins"))
            # Any answer to a login, accepted or refused, means the server is up; which
            # password it takes is decided next.
            wait_until_accepting(
                self._db_address(),
                ADMIN_ROLE,
                env.get(PASSWORD_KEY) or "rotator-readiness-probe",
                timeout_s=DB_READY_TIMEOUT_S,
            )
        if down:
            found = ", ".join(f"{s} ({_state_of(states, s)})" for s in down)
            self._emit(Note(f"starting services left down: {found}"))
            self.runtime.recreate(compose, env, down)

    def _database_holds(self, state: JournalState, plan: Plan, target: Mapping[str, str]) -> str:
        """'new', 'old' or '' (no database in this rotation). When the database accepts
        neither, its password is set to `target`'s through the db container's socket,
        if `via_socket` or a person says so; else RecoveryNeeded says how."""
        if not (state.db_roles or plan.db_roles) or PASSWORD_KEY not in state.new:
            return ""
        address = self._db_address()
        for label, values in (("new", state.new), ("old", state.old)):
            if accepts_password(address, ADMIN_ROLE, values[PASSWORD_KEY]):
                return label
        which = "new" if target is state.new else "old"
        question = (
            f"The database accepts neither the old nor the new password for {ADMIN_ROLE}. "
            f"Set every shared role's password to the {which} one through the db "
            "container's local socket (no password needed)?"
        )
        self._emit(Note(question.split(". ")[0]))
        if not (self.via_socket or (self.ask is not None and self.ask(question))):
            raise RecoveryNeeded(
                f"the database accepts neither the old nor the new password for {ADMIN_ROLE}; "
                f"run `{recover_command(self.deployment.directory)} --via-socket` to set it "
                "through the db container's local socket"
            )
        roles = state.db_roles or list(plan.db_roles)
        env = self.deployment.values()
        host, port = env.get("POSTGRES_HOST") or "db", int(env.get("POSTGRES_PORT") or "5432")
        other = state.old if target is state.new else state.new
        self._set_database_via_socket(roles, target[PASSWORD_KEY], other[PASSWORD_KEY], host, port)
        self._audit(state, "socket_reset", f"shared password set to the {which} one via the socket")
        return f"{which} (set through the socket)"

    # ------------------------------------------------------------------ helpers

    @contextmanager
    def _step(self, state: JournalState, step: Step, *, persist: bool = True) -> Iterator[_Outcome]:
        self._emit(StepStarted(step.value))
        if persist:
            self.journal.start(state, step)
        started = time.monotonic()
        outcome = _Outcome()
        try:
            yield outcome
        except RotatorError as exc:
            self._emit(StepFailedEvent(step.value, str(exc)))
            if isinstance(exc, StepFailed) and not exc.step:
                exc.step = step.value
            raise
        if persist:
            self.journal.complete(state, step)
        self._emit(StepFinished(step.value, outcome.detail, time.monotonic() - started))

    @contextmanager
    def _interruptible(self) -> Iterator[None]:
        """Ctrl-C once the journal exists is a rotation left half-done: exit 3 and say
        how to finish it. Before that, nothing changed and it stays an interrupt."""
        try:
            yield
        except KeyboardInterrupt:
            if not self.journal.exists():
                raise
            state = self.journal.read()
            if state is not None:
                self._audit_safely(state, "needs_recovery", "interrupted")
            raise RecoveryNeeded(
                f"interrupted; the rotation was under way and its journal is kept: run "
                f"`{recover_command(self.deployment.directory)}` to finish or undo it"
            ) from None

    def _evidence(self, state: JournalState) -> Evidence:
        return Evidence(
            secret=state.secret,
            old=state.old,
            new=state.new,
            backup=state.backup,
            env_path=self.deployment.env_path,
        )

    def _prune_backups(self) -> None:
        try:
            deleted = prune(self.deployment.state_dir, grace_s=self.backup_grace_s)
        except OSError as exc:
            self._emit(Note(f"could not prune old .env backups ({_os_error(exc)})"))
            return
        if deleted:
            self._emit(Note(f"pruned {len(deleted)} older .env backup(s)"))

    def _tell_staged(self, state: JournalState) -> None:
        if self.on_staged is not None:
            self.on_staged([*state.old.values(), *state.new.values()])

    def _emit(self, event: Event) -> None:
        emit_safely(self.progress, event)

    def _db_address(self) -> DbAddress:
        return db_address(self.deployment, self.runtime)

    def _db_service(self) -> str:
        return self.deployment.database_service()

    def _given(self, secret: Secret, given: Mapping[str, str] | None) -> Mapping[str, str] | None:
        if secret.source is Source.GIVEN and not given:
            raise InputError(
                f"{secret.name} values are issued by your provider, not generated: supply "
                f"{', '.join(secret.given_keys)} (rotator rotate {secret.name} --values-file FILE)"
            )
        return given

    def _audit(self, state: JournalState, result: str, detail: str) -> None:
        self.audit.append(
            new_record(state.rotation_id, self.actor, "rotate", state.secret, result, detail)
        )

    def _audit_safely(self, state: JournalState, result: str, detail: str) -> None:
        """Audit on a way out that must not be masked by a second failure (a full disk)."""
        try:
            self._audit(state, result, detail)
        except OSError:
            self._emit(Note("could not write the audit record (disk?)"))


def _describe_change(change: PasswordChange) -> str:
    parts = [f"ALTER ROLE for {len(change.changed)} roles in one transaction"]
    if change.missing:
        parts.append("not in this database: " + ", ".join(change.missing))
    parts.append("pooler tenant reset" if change.pooler_reset else "no pooler schema")
    if change.analytics_updated:
        parts.append(f"{change.analytics_updated} analytics backend URL(s) updated")
    return "; ".join(parts)


def _state_of(states: Mapping[str, object], service: str) -> str:
    state = states.get(service)
    return "missing" if state is None else str(getattr(state, "status", "?"))


def _os_error(exc: OSError) -> str:
    """An OSError in words, without the path's contents: its errno name and message."""
    return exc.strerror or type(exc).__name__


def _verify_summary(checks: Sequence[CheckResult]) -> str:
    passed = sum(c.ok is True for c in checks)
    skipped = sum(c.ok is None for c in checks)
    summary = f"{passed} check(s) passed"
    return summary + (f", {skipped} not applicable" if skipped else "")
