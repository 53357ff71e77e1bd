from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.commands import (
    CancelRequest,
    Command,
    CommandError,
    RequestRotation,
    ShowHelp,
    ShowPlan,
    ShowStatus,
    parse_command,
)
from tests.bot.conftest import SECRETS, deployment_table
from workers.config import Settings, parse_config

NOW = datetime(2025, 6, 6, 12, 0, tzinfo=UTC)  # a Friday
BERLIN = ZoneInfo("Europe/Berlin")
ONE = parse_config(
    {
        "deployments": {
            "prod": deployment_table(windows=["Sat 02:00-04:00 UTC", "daily 10:00-18:00"])
        }
    },
    "t.toml",
)
TWO = parse_config(
    {
        "deployments": {
            "prod": deployment_table(windows=[]),
            "staging": deployment_table(windows=[]),
        }
    },
    "t.toml",
)


def parse(text: str, settings: Settings = ONE, zone: ZoneInfo = BERLIN) -> Command:
    return parse_command(
        text, settings=settings, secret_names=list(SECRETS), user_zone=zone, now=NOW
    )


def refusal(text: str, settings: Settings = ONE) -> str:
    with pytest.raises(CommandError) as caught:
        parse(text, settings)
    return str(caught.value)


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "help", "HELP me"])
def test_help(text: str) -> None:
    assert parse(text) == ShowHelp()


def test_status_cancel_and_plan() -> None:
    assert parse("status") == ShowStatus()
    assert parse("cancel r-7f3a2b") == CancelRequest("r-7f3a2b")
    assert parse("plan jwt-secret") == ShowPlan("jwt-secret", "prod")
    assert parse("plan jwt-secret staging", TWO) == ShowPlan("jwt-secret", "staging")


@pytest.mark.parametrize(
    ("text", "when"),
    [
        ("jwt-secret prod at 2025-06-07T02:30+00:00", utc(2025, 6, 7, 2, 30)),
        ("jwt-secret prod at 2025-06-07T04:30", utc(2025, 6, 7, 2, 30)),  # Berlin, CEST
        ("jwt-secret prod at 2025-06-07 02:30 UTC", utc(2025, 6, 7, 2, 30)),
        ("jwt-secret prod at 2025-06-07 04:30", utc(2025, 6, 7, 2, 30)),
        ("jwt-secret at 15:00", utc(2025, 6, 6, 13, 0)),  # today, Berlin
        ("jwt-secret at 13:30", utc(2025, 6, 7, 11, 30)),  # passed today: tomorrow
        ("jwt-secret at 15:00 UTC", utc(2025, 6, 6, 15, 0)),
        ("jwt-secret at tomorrow 03:00 UTC", utc(2025, 6, 7, 3, 0)),
        ("jwt-secret at +2h", utc(2025, 6, 6, 14, 0)),
        ("jwt-secret prod at next window", utc(2025, 6, 7, 2, 0)),
        ("jwt-secret prod", utc(2025, 6, 7, 2, 0)),
    ],
)
def test_when_is_read_in_the_requesters_zone_unless_explicit(text: str, when: datetime) -> None:
    command = parse(text)
    assert isinstance(command, RequestRotation)
    assert command.window_start == when
    assert command.deployment == "prod"
    assert not command.emergency


def test_a_reason_follows_the_time() -> None:
    command = parse("anon-key prod at +2h quarterly rotation")
    assert isinstance(command, RequestRotation)
    assert command.reason == "quarterly rotation"


def test_now_with_a_reason_is_an_emergency() -> None:
    command = parse("jwt-secret prod now leaked in CI logs")
    assert command == RequestRotation("jwt-secret", "prod", NOW, True, "leaked in CI logs")


def test_now_without_a_reason_says_how_to_give_one() -> None:
    assert refusal("jwt-secret prod now") == (
        "Emergency rotations need a reason: `/rotate jwt-secret prod now leaked in CI logs`."
    )


def test_an_unknown_secret_lists_the_valid_names() -> None:
    message = refusal("jwt prod")
    assert "Unknown secret `jwt`" in message
    assert "`anon-key`, `jwt-secret`, `smtp`" in message


def test_an_unknown_deployment_lists_the_configured_ones() -> None:
    message = refusal("jwt-secret prdo at +1h", TWO)
    assert "Unknown deployment `prdo`" in message
    assert "`prod`, `staging`" in message


def test_a_missing_deployment_with_several_configured_asks_for_one() -> None:
    assert "Say which deployment: one of `prod`, `staging`" in refusal("jwt-secret", TWO)


def test_an_unreadable_time_says_what_to_type() -> None:
    message = refusal("jwt-secret prod at teatime")
    assert "Cannot read the time `teatime`" in message
    assert "`at next window`" in message
    assert "Say when" in refusal("jwt-secret prod at")
    assert "`+soon` is not a duration" in refusal("jwt-secret prod at +soon")
    assert "`25:00` is not a time of day" in refusal("jwt-secret prod at 25:00")
    assert "unknown time zone" in refusal("jwt-secret prod at 03:00 Mars/Olympus")


def test_a_time_in_the_past_is_refused() -> None:
    assert "is in the past" in refusal("jwt-secret prod at 2025-06-01 03:00 UTC")


def test_a_time_outside_the_windows_is_refused_with_the_windows() -> None:
    message = refusal("jwt-secret prod at 2025-06-07 20:00 UTC")
    assert (
        "outside `prod`'s maintenance windows (Sat 02:00-04:00 UTC; daily 10:00-18:00)" in message
    )
    assert "`/rotate jwt-secret prod at next window`" in message


def test_no_windows_means_say_when() -> None:
    assert "has no maintenance windows configured, so say when" in refusal("jwt-secret prod", TWO)
    command = parse("jwt-secret prod at 2025-06-08 20:00 UTC", TWO)
    assert isinstance(command, RequestRotation)


def test_cancel_and_plan_without_arguments_say_what_to_type() -> None:
    assert refusal("cancel") == "Say which request to cancel: `/rotate cancel r-7f3a2b`."
    assert refusal("plan") == "Say which secret to plan: `/rotate plan jwt-secret`."
    assert "`plan` takes a secret and a deployment" in refusal("plan jwt-secret prod extra")


def test_a_window_absurdly_far_ahead_says_what_to_type_instead() -> None:
    message = refusal("jwt-secret prod at +99999999999h")
    assert "not a duration" in message
