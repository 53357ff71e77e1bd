"""Redis is no open door: the worker runs rotator's own jobs only, serialized as JSON, and
the connection takes its password from a file, over TLS when the URL says rediss://."""

from __future__ import annotations

import ipaddress
import os
import pickle
import shutil
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from redis import Redis
from redis.exceptions import AuthenticationError
from rq.job import Job

from tests.conftest import service_missing
from tests.workers.conftest import Site
from workers.connection import SERIALIZER, connect_redis
from workers.runner import RotatorSimpleWorker, refusal

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def marker_file(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def test_a_foreign_function_is_refused_not_run(site: Site, tmp_path: Path) -> None:
    marker = marker_file(tmp_path)
    job = site.queue.enqueue("os.system", f"touch {marker}", job_id="foreign-job")
    site.job_ids.append(job.id)
    site.work()
    refused = Job.fetch(job.id, connection=site.redis, serializer=SERIALIZER)
    assert refused.get_status() == "failed"
    result = refused.latest_result()
    assert result is not None and "'os.system' is not a rotator job function" in str(
        result.exc_string
    )
    assert not marker.exists()


def test_a_pickled_payload_is_refused_not_run(site: Site, tmp_path: Path) -> None:
    """What an attacker with write access to Redis would plant for a pickle-reading worker."""
    marker = marker_file(tmp_path)
    job = site.queue.enqueue("workers.jobs.send_notice", "r-0", "before-1h", job_id="planted-job")
    site.job_ids.append(job.id)
    payload = (os.system, None, (f"touch {marker}",), {})
    site.redis.hset(f"rq:job:{job.id}", "data", zlib.compress(pickle.dumps(payload)))
    site.work()
    refused = Job.fetch(job.id, connection=site.redis, serializer=SERIALIZER)
    assert refused.get_status() == "failed"
    result = refused.latest_result()
    assert result is not None and "not JSON" in str(result.exc_string)
    assert not marker.exists()


def test_only_id_shaped_arguments_pass(site: Site) -> None:
    ok = site.queue.create_job("workers.jobs.run_rotation", args=("r-1a2b",))
    assert refusal(ok) is None
    spaced = site.queue.create_job("workers.jobs.run_rotation", args=("r-1; rm -rf /",))
    assert refusal(spaced) == "rotator job arguments are ids ([A-Za-z0-9_.:-])"
    kwargs = site.queue.create_job("workers.jobs.run_rotation", kwargs={"request_id": "r-1"})
    assert refusal(kwargs) == "rotator jobs take positional ids only"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[tuple[int, int, Path, Path]]:
    """A redis-server of its own: a password, and a TLS port with a certificate we sign."""
    if shutil.which("redis-server") is None:
        service_missing("redis-server is not installed")
    password = "a1b2c3d4e5f6a7b8c9d0"
    (tmp_path / "redis-password").write_text(password + "\n")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    port, tls_port = _free_port(), _free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "-",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(tmp_path / "cert.pem"),
            "--tls-key-file",
            str(tmp_path / "key.pem"),
            "--tls-auth-clients",
            "no",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None
    server.stdin.write(f"requirepass {password}\n".encode())
    server.stdin.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            Redis(port=port, password=password).ping()
            break
        except Exception:
            time.sleep(0.05)
    try:
        yield port, tls_port, tmp_path / "redis-password", tmp_path / "cert.pem"
    finally:
        server.terminate()
        server.wait(10)


def test_the_password_comes_from_a_file_and_tls_from_rediss(
    guarded_redis: tuple[int, int, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, tls_port, password_file, ca = guarded_redis
    monkeypatch.delenv("REDIS_PASSWORD_FILE", raising=False)
    with pytest.raises(AuthenticationError):
        connect_redis(f"redis://127.0.0.1:{port}/0").ping()
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(password_file))
    assert connect_redis(f"redis://127.0.0.1:{port}/0").ping()
    monkeypatch.setenv("REDIS_CA_FILE", str(ca))
    tls = connect_redis(f"rediss://127.0.0.1:{tls_port}/0")
    assert tls.ping()
    assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    # The worker runs against it as against any Redis (the JSON serializer, our jobs only).
    assert RotatorSimpleWorker([], connection=tls).serializer is SERIALIZER
