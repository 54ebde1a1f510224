"""Secrets stay secret: which values count as secrets, the scrubber that fails closed, and one check of every file
under a folder (text, Parquet behind compression, PDF streams, gzip) for every one of them."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import pandas as pd
import pytest

from lab.evidence import secretscan
from lab.evidence.runfolder import RunFolder
from lab.evidence.runlogs import NOT_WRITTEN, save_logs
from lab.pretix.buyers import buyer_secret, password_for
from lab.stack import secrets


def _deployment(directory: Path) -> secrets.Secrets:
    made = secrets.load_or_create(directory)
    (directory / "pretix.json").write_text(json.dumps({"api_token": "tok-" + "t" * 40, "admin_password": "adm-" * 6}))
    pd.DataFrame([{"identifier": "A", "email": "Ann@example.org", "name": "Ann", "has_password": True},
                  {"identifier": "B", "email": "bob@example.org", "name": "Bob", "has_password": False}]
                 ).to_parquet(directory / "buyers.parquet")
    return made


def test_known_secrets_include_the_buyers_derived_passwords(tmp_path):
    made = _deployment(tmp_path)
    kinds = secretscan.known_secrets(tmp_path)
    key = buyer_secret(made.django_secret)
    assert kinds["buyer_secret"] == [key]
    assert kinds["buyer_password"] == [password_for(key, "Ann@example.org")]  # only buyers who have one
    assert kinds["redis_password"] == [made.redis_password] and kinds["api_token"] == ["tok-" + "t" * 40]
    assert "metrics_user" not in kinds
    assert secretscan.known_secrets(tmp_path / "nothing-deployed") == {}


def test_unreadable_secrets_are_an_error_and_the_scrubber_fails_closed(tmp_path):
    (tmp_path / "secrets.json").write_text("{not json")
    with pytest.raises(secretscan.SecretsUnavailable, match="cannot be read"):
        secretscan.known_secrets(tmp_path)
    with pytest.raises(secretscan.SecretsUnavailable, match="cannot be read"):
        secretscan.load_scrubber(tmp_path)
    with pytest.raises(secretscan.SecretsUnavailable, match="no secrets found"):
        secretscan.load_scrubber(tmp_path / "nothing-deployed")


def test_the_scrubber_covers_every_kind(tmp_path):
    made = _deployment(tmp_path)
    scrub = secretscan.load_scrubber(tmp_path)
    password = password_for(buyer_secret(made.django_secret), "Ann@example.org")
    line = f"login {password} redis={made.redis_password} token=tok-{'t' * 40}"
    assert scrub(line) == "login *** redis=*** token=***"


def test_run_logs_are_not_written_without_the_secrets(tmp_path, monkeypatch):
    """No secrets to scrub against: not one raw line, one note saying why (and no docker call is made)."""
    monkeypatch.setenv("PRETIX_LAB_VAR", str(tmp_path / "var"))
    run_dir = tmp_path / "run"
    summary = save_logs(run_dir, None, since=1.0, until=2.0)
    assert "could not be scrubbed" in summary["not_written"]
    folder = RunFolder(run_dir)
    assert sorted(p.name for p in folder.logs_dir.iterdir()) == [NOT_WRITTEN]
    note = (folder.logs_dir / NOT_WRITTEN).read_text()
    assert note.count("\n") == 1 and "no secrets found" in note
    assert not folder.proxy_access_path.exists()


def _run_folder(root: Path, leak: str | None = None) -> Path:
    """A run folder as a run writes it: Parquet part files (zstd), run.json, a log; `leak` planted in one error."""
    run = root / "runs" / "r1"
    (run / "requests.parquet").mkdir(parents=True)
    errors = ["timeout", "HTTP 409", leak or "HTTP 500"] * 50
    pd.DataFrame({"time": range(150), "status": [200] * 150, "error": errors}).to_parquet(
        run / "requests.parquet" / "part-000000.parquet", compression="zstd")
    pd.DataFrame({"fault": ["pause"], "detail": ["redis paused"]}).to_parquet(run / "faults.parquet")
    (run / "run.json").write_text(json.dumps({"run_id": "r1", "params": {"rate": 4}}))
    (run / "logs").mkdir()
    (run / "logs" / "redis.log").write_text("2026-12-03T00:00:00Z ready password=***\n")
    return run


def test_a_clean_run_folder_and_report_pass(tmp_path):
    _deployment(tmp_path / "deploy")
    values = secretscan.known_secrets(tmp_path / "deploy")
    _run_folder(tmp_path / "study")
    (tmp_path / "study" / "index.html").write_text("<html><body><p>verdict: PASS</p></body></html>")
    assert secretscan.find_secrets(tmp_path / "study", values) == []


def test_a_secret_in_a_compressed_parquet_and_in_a_report_is_found_by_kind(tmp_path):
    made = _deployment(tmp_path / "deploy")
    values = secretscan.known_secrets(tmp_path / "deploy")
    password = password_for(buyer_secret(made.django_secret), "Ann@example.org")
    run = _run_folder(tmp_path / "study", leak=f"login failed for {password}")
    report = tmp_path / "study" / "report" / "index.html"
    report.parent.mkdir()
    report.write_text(f"<html><body><pre>{made.postgres_password}</pre></body></html>")
    found = secretscan.find_secrets(tmp_path / "study", values)
    assert found == sorted([(run / "requests.parquet" / "part-000000.parquet", "buyer_password"),
                            (report, "postgres_password")])
    assert all(password not in str(f) and made.postgres_password not in str(f) for f in found)
    assert secretscan.find_secrets(report, values) == [(report, "postgres_password")]  # a single file too


def test_pdf_streams_gzip_and_undecodable_files_are_checked(tmp_path):
    secret = "s3cret-" + "x" * 20
    values = {"admin_password": [secret]}
    stream = zlib.compress(f"BT ({secret}) Tj ET".encode())
    pdf = (b"%PDF-1.4\n1 0 obj\n<< /Length " + str(len(stream)).encode() + b" /Filter /FlateDecode >>\nstream\n"
           + stream + b"\nendstream\nendobj\n%%EOF\n")
    (tmp_path / "report.pdf").write_bytes(pdf)
    (tmp_path / "notes.txt.gz").write_bytes(gzip.compress(secret.encode()))
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really PAR1")
    (tmp_path / "clean.txt").write_text("nothing here")
    assert secretscan.find_secrets(tmp_path, values) == [
        (tmp_path / "broken.parquet", secretscan.UNREADABLE), (tmp_path / "notes.txt.gz", "admin_password"),
        (tmp_path / "report.pdf", "admin_password")]
    with pytest.raises(ValueError, match="no secret values"):
        secretscan.find_secrets(tmp_path, {"api_token": ["", "ab"]})


def test_the_longest_secret_wins_and_regex_characters_are_literal():
    scrub = secretscan.Scrubber({"a": ["abcd", "xxabcdxx"], "b": ["a.b*c+"]})
    assert scrub("xxabcdxx abcdxx a.b*c+ aXb*c+") == "*** ***xx *** aXb*c+"
    assert secretscan.trie_regex(["ab", "abc"]) == "ab(?:c)?"


def test_check_or_fail_names_file_and_kind_never_the_value_and_refuses_a_leak(tmp_path, monkeypatch):
    """What `lab load` and `lab report` run on what they wrote: clean passes with a count, a leak is an error."""
    deployment = tmp_path / "deploy"
    deployment.mkdir()
    made = _deployment(deployment)
    monkeypatch.setattr(secretscan, "deploy_dir", lambda: deployment)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"name": "clean"}))
    lines: list[str] = []
    record = secretscan.check_or_fail([run], lines.append)
    assert record["findings"] == [] and record["files"] == 1
    assert lines == ["secret check: 1 file(s) searched, none holds a secret"]

    (run / "log.txt").write_text(f"connected with {made.redis_password}\n")
    lines.clear()
    with pytest.raises(secretscan.SecretFound, match="1 secret finding"):
        secretscan.check_or_fail([run], lines.append)
    assert lines == [f"SECRET FOUND: {run / 'log.txt'}: redis_password"]
    assert made.redis_password not in "".join(lines)

    monkeypatch.setattr(secretscan, "deploy_dir", lambda: tmp_path / "nothing-deployed")
    record = secretscan.check_places([run])
    assert record["findings"] == [] and "not_needed" in record
    (deployment / "pretix.json").write_text("{not json")
    monkeypatch.setattr(secretscan, "deploy_dir", lambda: deployment)
    unreadable = secretscan.check_places([run])
    assert [f["kind"] for f in unreadable["findings"]] == ["unchecked"]
