from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.bot.conftest import deployment_table
from workers.config import ConfigError, load_config, parse_config, parse_duration, parse_window

EXAMPLE = """
[bot]
timezone = "Europe/Berlin"

[deployments.prod]
project = "supabase/docker"
channel = "C0123ABCD"
announce_channel = "C0456EFGH"
requesters = ["U01AAAA"]
approvers = ["U01CCCC", "U01DDDD"]
approver_groups = ["S01DDDD"]
oncall = ["U01CCCC"]
approvals = 1
critical_approvals = 2
request_ttl = "12h"
windows = ["Sat 02:00-04:00 UTC", "Mon-Fri 23:00-01:00"]
notice_lead_times = ["10m", "24h", "1h"]
webhooks = ["https://status.example.com/hook"]
break_glass = true
worker_public_key = "keys/prod.pub.pem"
"""


def refusal(**overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config({"deployments": {"prod": deployment_table(**overrides)}}, "rotator.toml")
    return caught.value


def test_the_documented_example_loads_with_paths_relative_to_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rotator.toml").write_text(EXAMPLE)
    monkeypatch.setenv("ROTATOR_CONFIG", str(tmp_path / "rotator.toml"))
    settings = load_config()
    prod = settings.deployment("prod")
    assert prod.project == tmp_path / "supabase/docker"
    assert prod.worker_public_key == tmp_path / "keys/prod.pub.pem"
    assert prod.request_ttl == timedelta(hours=12)
    assert prod.notice_lead_times == (
        timedelta(hours=24),
        timedelta(hours=1),
        timedelta(minutes=10),
    )
    assert prod.windows[1].zone.key == "Europe/Berlin"
    assert prod.queue_name == "rotator:prod"
    assert prod.break_glass is True


def test_an_unknown_key_is_refused_with_file_and_key() -> None:
    error = refusal(aprovers=["U1AAA"])
    assert error.source == "rotator.toml"
    assert error.key == "deployments.prod.aprovers"
    assert "unknown key" in str(error)
    assert str(error).startswith("rotator.toml: deployments.prod.aprovers:")


def test_a_value_of_the_wrong_type_is_refused_with_the_reason() -> None:
    error = refusal(approvals="two")
    assert error.key == "deployments.prod.approvals"
    assert "must be an integer, not str" in error.reason


@pytest.mark.parametrize(
    ("overrides", "key", "reason"),
    [
        ({"approvals": 0}, "approvals", "at least 1"),
        ({"approvals": True}, "approvals", "must be an integer"),
        ({"critical_approvals": 1, "approvals": 2}, "critical_approvals", "at least approvals"),
        ({"approvers": ["bob"]}, "approvers", "not a Slack user id"),
        ({"approver_groups": ["U123"]}, "approver_groups", "not a Slack user group id"),
        ({"channel": "#general"}, "channel", "not a Slack channel id"),
        ({"request_ttl": "soon"}, "request_ttl", "not a duration"),
        ({"windows": ["Caturday 02:00-04:00"]}, "windows", "unknown day"),
        ({"windows": ["Sat 02:00-25:00"]}, "windows", "impossible time"),
        ({"windows": ["Sat 02:00-04:00 Mars/Olympus"]}, "windows", "unknown time zone"),
        ({"notice_lead_times": ["1 hour"]}, "notice_lead_times", "not a duration"),
        ({"webhooks": ["ftp://x"]}, "webhooks", "not an http(s) URL"),
        ({"approvers": [], "approver_groups": []}, "approvers", "no approvers"),
        ({"approvers": ["U1AAA"], "approver_groups": []}, "approvers", "critical_approvals is 2"),
    ],
)
def test_bad_values_are_refused(overrides: dict[str, Any], key: str, reason: str) -> None:
    error = refusal(**overrides)
    assert error.key == f"deployments.prod.{key}"
    assert reason in error.reason


def test_a_missing_required_key_is_named() -> None:
    table = deployment_table()
    del table["channel"]
    with pytest.raises(ConfigError, match=r"deployments\.prod\.channel: is required"):
        parse_config({"deployments": {"prod": table}}, "rotator.toml")


def test_unknown_top_level_and_bot_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"rotator\.toml: deployment: unknown key"):
        parse_config({"deployment": {}}, "rotator.toml")
    with pytest.raises(ConfigError, match=r"bot\.tz: unknown key"):
        parse_config(
            {"bot": {"tz": "UTC"}, "deployments": {"p": deployment_table()}}, "rotator.toml"
        )


def test_a_missing_file_and_bad_toml_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[deployments\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_a_window_past_midnight_contains_the_small_hours() -> None:
    window = parse_window("Fri 23:00-01:00 UTC", parse_window("daily 00:00-01:00", _utc()).zone)
    friday_late = datetime(2025, 6, 6, 23, 30, tzinfo=UTC)  # a Friday
    saturday_early = datetime(2025, 6, 7, 0, 30, tzinfo=UTC)
    assert window.contains(friday_late)
    assert window.contains(saturday_early)
    assert not window.contains(datetime(2025, 6, 7, 1, 30, tzinfo=UTC))
    assert window.next_start(saturday_early) == datetime(2025, 6, 13, 23, 0, tzinfo=UTC)


def test_a_window_in_a_zone_opens_at_local_time() -> None:
    window = parse_window("weekdays 03:00-05:00 Europe/Berlin", _utc())
    after = datetime(2025, 6, 6, 12, 0, tzinfo=UTC)  # Friday noon
    assert window.next_start(after) == datetime(2025, 6, 9, 1, 0, tzinfo=UTC)  # Monday, CEST


def test_durations_combine_units() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("90 minutes")


def _utc() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo("UTC")


def test_probe_settings_default_on_and_can_point_elsewhere_or_off() -> None:
    default = parse_config({"deployments": {"prod": deployment_table()}}, "rotator.toml")
    prod = default.deployment("prod")
    assert (prod.gateway_probes, prod.gateway_url, prod.pooler_probe) == (True, "", True)
    moved = parse_config(
        {
            "deployments": {
                "prod": deployment_table(
                    gateway_url="https://gw.internal", gateway_probes=False,
                    pooler_address="10.0.0.5:6543", pooler_probe=False,
                )
            }
        },
        "rotator.toml",
    ).deployment("prod")  # fmt: skip
    assert moved.gateway_url == "https://gw.internal" and not moved.gateway_probes
    assert moved.pooler_address == "10.0.0.5:6543" and not moved.pooler_probe


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [("gateway_url", "gw.internal", "http(s) URL"), ("pooler_address", "10.0.0.5", "host:port")],
)
def test_probe_addresses_that_cannot_work_are_refused(key: str, value: str, reason: str) -> None:
    error = refusal(**{key: value})
    assert error.key == f"deployments.prod.{key}" and reason in error.reason
