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
import shutil
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


def private_folder(path: Path) -> Path:
    """A folder only its owner can enter (0700), made so or tightened if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def write_private(path: Path, text: str | bytes, mode: int = 0o600) -> None:
    """Create with the final mode from the start (no window where the file is world-readable), in a 0700 folder."""
    private_folder(path.parent)
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, mode)


def remove_secrets(directory: Path) -> list[str]:
    """Delete a deployment folder (secrets, keys, tokens); returns what could not be removed and why (empty when
    all is gone), so a caller reports it instead of leaving secrets behind unnoticed."""
    problems: dict[str, str] = {}  # path -> the first error there (rmtree may report one path twice)

    def failed(_function, path, info) -> None:
        problems.setdefault(str(path), f"{path}: {type(info[1]).__name__}: {info[1].strerror or info[1]}"
                            if isinstance(info[1], OSError) else f"{path}: {info[1]}")

    if directory.exists():
        shutil.rmtree(directory, onerror=failed)
    if directory.exists() and not problems:
        problems[str(directory)] = f"{directory}: still exists after removal"
    return list(problems.values())


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


def secret_kinds(directory: Path | None = None) -> dict[str, list[str]]:
    """Every secret of the deployment by kind (secrets.json's keys, pretix.json's api_token and admin_password).
    A file that exists but cannot be read raises (OSError, ValueError): a caller must not take it for "none"."""
    directory = directory or deploy_dir()
    kinds: dict[str, list[str]] = {}
    path = directory / "secrets.json"
    if path.exists():
        for key, value in json.loads(path.read_text()).items():
            if key != "metrics_user" and value:
                kinds.setdefault(key, []).append(str(value))
    pretix = directory / "pretix.json"
    if pretix.exists():
        doc = json.loads(pretix.read_text())
        for key in ("api_token", "admin_password"):
            if doc.get(key):
                kinds.setdefault(key, []).append(str(doc[key]))
    return kinds


def secret_values(directory: Path | None = None) -> list[str]:
    """Every secret of the deployment, for scrubbing outputs and for tests that look for leaks."""
    return [value for values in secret_kinds(directory).values() for value in values]


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
        private_folder(tls)  # a deployment made before the keys were kept private is tightened here
        for key in ("ca.key", "server.key"):
            if (tls / key).exists():
                os.chmod(tls / key, 0o600)
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
    # nginx's master process reads the key (and the certificates) as root before its workers drop privileges, so
    # both keys stay 0600 in a 0700 folder; the certificates are public (0644) but live in the same folder.
    write_private(tls / "server.key", key.private_bytes(pem, private, none))
    write_private(tls / "server.crt", cert.public_bytes(pem) + ca_cert.public_bytes(pem), mode=0o644)
    write_private(tls / "ca.crt", ca_cert.public_bytes(pem), mode=0o644)
    return tls
