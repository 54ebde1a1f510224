"""Per-deployment secrets and TLS: private files, unique per deployment, a real CA chain."""

import ssl
import stat

from cryptography import x509

from lab.stack import secrets


def test_secrets_are_private_and_stable_within_a_deployment(tmp_path):
    first = secrets.load_or_create(tmp_path)
    again = secrets.load_or_create(tmp_path)
    assert first == again
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600
    secrets.write_env_files(first, tmp_path)
    for name in ("pretix.env", "postgres.env", "redis.env"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert first.redis_password in (tmp_path / "pretix.env").read_text()
    assert first.django_secret not in (tmp_path / "postgres.env").read_text()


def test_each_deployment_gets_new_secrets(tmp_path):
    a = secrets.load_or_create(tmp_path / "a")
    b = secrets.load_or_create(tmp_path / "b")
    assert a.django_secret != b.django_secret and a.postgres_password != b.postgres_password


def test_secret_values_lists_every_secret(tmp_path):
    made = secrets.load_or_create(tmp_path)
    values = secrets.secret_values(tmp_path)
    assert made.django_secret in values and made.redis_password in values and "metrics" not in values


def test_server_certificate_verifies_against_the_generated_ca(tmp_path):
    tls = secrets.ensure_tls(tmp_path)
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600
    context = ssl.create_default_context(cafile=str(tls / "ca.crt"))
    context.load_verify_locations(cafile=str(tls / "ca.crt"))
    cert = x509.load_pem_x509_certificate((tls / "server.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((tls / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert secrets.ensure_tls(tmp_path) == tls  # idempotent: same files, not regenerated
    assert (tls / "server.crt").read_bytes() == (tmp_path / "tls" / "server.crt").read_bytes()


def test_keys_are_0600_in_0700_folders_and_an_old_deployment_is_tightened(tmp_path):
    tls = secrets.ensure_tls(tmp_path)
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tls / "ca.crt").stat().st_mode) == 0o644  # public, but behind the 0700 folder
    secrets.load_or_create(tmp_path)
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    (tls / "server.key").chmod(0o644)  # as deployments before this change left them
    tls.chmod(0o755)
    secrets.ensure_tls(tmp_path)
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600


def test_removing_secrets_reports_what_it_could_not_remove(tmp_path):
    deployed = tmp_path / "deploy"
    secrets.load_or_create(deployed)
    assert secrets.remove_secrets(deployed) == [] and not deployed.exists()
    assert secrets.remove_secrets(deployed) == []  # nothing there: nothing to report
    not_a_folder = tmp_path / "deploy-file"
    not_a_folder.write_text("a file where the deployment folder should be")
    problems = secrets.remove_secrets(not_a_folder)
    assert problems and str(not_a_folder) in problems[0] and "Error" in problems[0], problems
