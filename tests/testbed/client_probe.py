"""The official client as a probe: what an app built on supabase-py sees of the deployment.

`probe(tb, label)` makes a client the way an app does (`supabase.create_client` with the
gateway's URL and the client key in .env: SUPABASE_PUBLISHABLE_KEY when set, else
ANON_KEY), then, through the gateway: signs up a new user, signs in with the password,
reads the `items` table as that user (PostgREST, row level security), and refreshes the
session. Given the session of an earlier probe (`previous`), it also refreshes that one
and reads with it: refresh tokens are rows, so a session from before a rotation must
survive it (addendum A6), whatever the rotation changed.

Every step is recorded, never a token or a key; `ProbeReport.text()` is what e2e tests
print. A step that fails is recorded with its error, and `ProbeReport.failures()` lists
them.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.testbed.testbed import Testbed

PASSWORD_BYTES = 12


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    detail: str


@dataclass
class ProbeReport:
    label: str
    key_name: str
    steps: list[Step] = field(default_factory=list)
    refresh_token: str | None = None
    """This probe's session, for the next probe's `previous` (kept out of `text()`)."""
    user_id: str = ""
    """The user this probe signed up."""

    def failures(self) -> list[Step]:
        return [s for s in self.steps if not s.ok]

    def text(self) -> str:
        lines = [f"official client ({self.label}, {self.key_name}):"]
        lines += [f"  {'ok  ' if s.ok else 'FAIL'} {s.name}: {s.detail}" for s in self.steps]
        return "\n".join(lines)


def _token_header(token: str) -> str:
    """alg and kid of an access token (its header is not secret), for the report."""
    import base64
    import json

    head = token.split(".")[0]
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    kid = header.get("kid")
    return f"{header.get('alg')}" + (f", kid {kid[:8]}…" if kid else ", no kid")


def probe(
    tb: Testbed, label: str, previous: ProbeReport | None = None, *, revoked: bool = False
) -> ProbeReport:
    """`revoked`: the rotation since `previous` revoked every session, so refreshing that
    session must now be refused (a stolen refresh token is worthless)."""
    import httpx

    # One HTTP client for every part of the Supabase clients, closed when the probe ends.
    with httpx.Client(timeout=15) as http:
        return _probe(tb, label, previous, http, revoked)


def _probe(
    tb: Testbed, label: str, previous: ProbeReport | None, http: Any, revoked: bool
) -> ProbeReport:
    from supabase import create_client
    from supabase.lib.client_options import SyncClientOptions

    env = tb.env()
    key_name = "SUPABASE_PUBLISHABLE_KEY" if env.get("SUPABASE_PUBLISHABLE_KEY") else "ANON_KEY"
    report = ProbeReport(label, key_name)
    url = tb.service_url("api-gw")

    def step(name: str, action: Callable[[], str]) -> bool:
        try:
            with warnings.catch_warnings():  # the client's own deprecation notices
                warnings.simplefilter("ignore", DeprecationWarning)
                detail = action()
        except Exception as exc:  # any failure is the finding; the report names it
            report.steps.append(Step(name, False, f"{type(exc).__name__}: {exc}"[:300]))
            return False
        report.steps.append(Step(name, True, detail))
        return True

    def client() -> Any:
        options = SyncClientOptions(
            auto_refresh_token=False, persist_session=False, httpx_client=http
        )
        return create_client(url, env[key_name], options)

    app = client()
    email = f"probe-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    state: dict[str, Any] = {}

    def sign_up() -> str:
        response = app.auth.sign_up({"email": email, "password": password})
        if response.user is None:
            raise AssertionError("no user in the answer")
        report.user_id = str(response.user.id)
        return f"user {response.user.id} created"

    def sign_in() -> str:
        response = app.auth.sign_in_with_password({"email": email, "password": password})
        state["session"] = response.session
        return f"session ({_token_header(response.session.access_token)})"

    def read(session_name: str) -> Callable[[], str]:
        def action() -> str:
            rows = app.table("items").select("id,name").execute().data
            if not rows:
                raise AssertionError("no rows: items unreadable as this user")
            return f"{len(rows)} rows of items as {session_name}"

        return action

    def refresh() -> str:
        response = app.auth.refresh_session(state["session"].refresh_token)
        state["session"] = response.session
        report.refresh_token = response.session.refresh_token
        return f"new access token ({_token_header(response.session.access_token)})"

    if step("sign up", sign_up) and step("sign in (password grant)", sign_in):
        step("read items", read("the new user"))
        step("refresh the session", refresh)
    if previous is not None and previous.refresh_token:
        old = client()

        def refresh_previous() -> str:
            response = old.auth.refresh_session(previous.refresh_token)
            report.refresh_token = report.refresh_token or response.session.refresh_token
            header = _token_header(response.session.access_token)
            return f"session from {previous.label} refreshed ({header})"

        if revoked:

            def refused() -> str:
                try:
                    refresh_previous()
                except Exception as exc:  # the refusal is the finding
                    return f"refused, as a revoked session must be ({type(exc).__name__})"
                raise AssertionError("a revoked session was refreshed")

            step(f"the session from {previous.label} cannot refresh", refused)
        elif step(f"refresh the session from {previous.label}", refresh_previous):
            app = old
            step("read items with it", read(f"the user from {previous.label}"))
    return report
