"""Per-deployment secrets and TLS material, in files of mode 0600 outside git.

A new deployment (after `lab down --volumes`) gets new secrets; a restart of the same one keeps them,
because its database volume was initialised with them.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from lab.common.paths import deploy_dir
from lab.stack.redis_ha import RedisTopology, default_topology


@dataclass(frozen=True)
class Secrets:
    django_secret: str
    postgres_password: str
    pretix_db_password: str
    replication_password: str
    redis_password: str
    metrics_user: str
    metrics_password: str


def _token(n: int = 24) -> str:
    return secrets.token_urlsafe(n)


def write_private(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Create with the final mode from the start (no window where the file is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def load_or_create(directory: Path | None = None) -> Secrets:
    directory = directory or deploy_dir()
    path = directory / "secrets.json"
    if path.exists():
        return Secrets(**json.loads(path.read_text()))
    made = Secrets(
        django_secret=secrets.token_urlsafe(50),
        postgres_password=_token(),
        pretix_db_password=_token(),
        replication_password=_token(),
        redis_password=_token(),
        metrics_user="metrics",
        metrics_password=_token(),
    )
    write_private(path, json.dumps(asdict(made), indent=2))
    return made


def _env_file(values: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def write_env_files(s: Secrets, directory: Path | None = None, redis: RedisTopology | None = None) -> None:
    """The env files compose.yaml reads (one per kind of service, each with only what it needs). pretix and
    celery find redis through its sentinels (`redis`: their fixed addresses; default: the default parameters)."""
    directory = directory or deploy_dir()
    redis = redis or default_topology()
    write_private(directory / "pretix.env", _env_file({
        "PRETIX_DJANGO_SECRET": s.django_secret,
        "PRETIX_DATABASE_PASSWORD": s.pretix_db_password,
        **redis.pretix_env(s.redis_password),
        "PRETIX_METRICS_ENABLED": "true",
        "PRETIX_METRICS_USER": s.metrics_user,
        "PRETIX_METRICS_PASSPHRASE": s.metrics_password,
    }))
    write_private(directory / "postgres.env", _env_file({
        "POSTGRES_PASSWORD": s.postgres_password,
        "PRETIX_DB_NAME": "pretix",
        "PRETIX_DB_USER": "pretix",
        "PRETIX_DB_PASSWORD": s.pretix_db_password,
        "REPLICATION_PASSWORD": s.replication_password,
    }))
    write_private(directory / "redis.env", _env_file({"REDIS_PASSWORD": s.redis_password}))


def secret_values(directory: Path | None = None) -> list[str]:
    """Every secret of the deployment, for scrubbing outputs and for tests that look for leaks."""
    directory = directory or deploy_dir()
    values: list[str] = []
    path = directory / "secrets.json"
    if path.exists():
        values += [v for k, v in json.loads(path.read_text()).items() if k != "metrics_user"]
    pretix = directory / "pretix.json"
    if pretix.exists():
        doc = json.loads(pretix.read_text())
        values += [doc[k] for k in ("api_token", "admin_password") if doc.get(k)]
    return values


def _name(common: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pretix-lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, common),
    ])


def ensure_tls(directory: Path | None = None) -> Path:
    """A CA and a server certificate for 127.0.0.1/localhost, made once per deployment.

    Clients verify against tls/ca.crt, so HTTPS is checked for real rather than switched off.
    """
    tls = (directory or deploy_dir()) / "tls"
    if (tls / "server.crt").exists() and (tls / "ca.crt").exists():
        return tls
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("pretix-lab deployment CA"))
        .issuer_name(_name("pretix-lab deployment CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    private = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    write_private(tls / "ca.key", ca_key.private_bytes(pem, private, none))
    # nginx's master reads the key as root before dropping privileges; the folder itself is 0700.
    write_private(tls / "server.key", key.private_bytes(pem, private, none), mode=0o644)
    write_private(tls / "server.crt", cert.public_bytes(pem) + ca_cert.public_bytes(pem), mode=0o644)
    write_private(tls / "ca.crt", ca_cert.public_bytes(pem), mode=0o644)
    os.chmod(tls, 0o755)
    return tls
