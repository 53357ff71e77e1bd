from __future__ import annotations

import pytest

from workers.sealed import SealError, generate_keypair, open_values, seal_values


def test_a_sealed_value_opens_only_with_the_worker_key_for_its_request() -> None:
    private, public = generate_keypair()
    blob = seal_values(public, {"SMTP_PASS": "hunter2-value"}, request_id="r-abc123")
    assert b"hunter2-value" not in blob
    assert open_values(private, blob, request_id="r-abc123") == {"SMTP_PASS": "hunter2-value"}
    with pytest.raises(SealError, match="does not open"):
        open_values(private, blob, request_id="r-other1")
    other_private, _ = generate_keypair()
    with pytest.raises(SealError, match="does not open"):
        open_values(other_private, blob, request_id="r-abc123")


def test_a_key_that_is_not_x25519_is_refused() -> None:
    with pytest.raises(SealError, match="not a PEM public key"):
        seal_values(b"not a key", {"K": "v"}, request_id="r-1")
