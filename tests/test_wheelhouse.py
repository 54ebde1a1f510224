"""Unit tests for lab.stack.wheelhouse: hashing, stamp, pip error parsing, marker gaps (no network, no pip)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lab.stack import wheelhouse as wh


def _fill(dest: Path, requirements, wheels=("a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl")) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in wheels:
        (dest / name).write_bytes(b"x")
    (dest / wh.REQUIREMENTS_NAME).write_text(wh.requirements_text(requirements))
    wh.write_stamp(dest, requirements)


def _fake_wheel(folder: Path, filename: str, requires: list[str]) -> Path:
    dist = "-".join(filename.split("-")[:2])
    path = folder / filename
    meta = "Metadata-Version: 2.1\nName: x\nVersion: 1\n" + "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", meta)
    return path


# --- hashing -------------------------------------------------------------------------------------------------


def test_hash_ignores_order_whitespace_and_duplicates():
    a = wh.requirements_hash(["pretix==2026.8.0", "gunicorn==27.0.1"])
    b = wh.requirements_hash(["  gunicorn==27.0.1 ", "pretix==2026.8.0", "", "pretix==2026.8.0"])
    assert a == b
    assert len(a) == 64


def test_hash_changes_with_requirements_and_target():
    base = wh.requirements_hash(["pretix==2026.8.0"])
    assert wh.requirements_hash(["pretix==2026.8.1"]) != base
    assert wh.requirements_hash(["pretix==2026.8.0", "async-timeout==5.0.1"]) != base
    assert wh.requirements_hash(["pretix==2026.8.0"], python_version="3.11.9") != base
    assert wh.requirements_hash(["pretix==2026.8.0"], platforms=("manylinux2014_x86_64",)) != base


def test_default_requirements_pin_what_the_image_needs():
    names = {wh.canonical_name(wh._requirement_name(r)) for r in wh.PRETIX_REQUIREMENTS}
    assert {"pretix", "gunicorn", "async-timeout"} <= names
    assert "pretix==2026.8.0" in wh.PRETIX_REQUIREMENTS
    assert all("==" in r for r in wh.PRETIX_REQUIREMENTS)
    assert wh.TARGET_PYTHON == "3.11.2"
    assert "manylinux2014_x86_64" in wh.TARGET_PLATFORMS


# --- stamp ---------------------------------------------------------------------------------------------------


def test_stamp_roundtrip(tmp_path):
    reqs = ("pretix==2026.8.0", "gunicorn==27.0.1")
    assert not wh.stamp_matches(tmp_path / "missing", reqs)
    _fill(tmp_path, reqs)
    assert wh.stamp_matches(tmp_path, reqs)
    assert wh.stamp_matches(tmp_path, tuple(reversed(reqs)))
    stamp = json.loads((tmp_path / wh.STAMP_NAME).read_text())
    assert stamp["wheels"] == ["a-1.0-py3-none-any.whl", "b-2.0-py3-none-any.whl"]
    assert stamp["hash"] == wh.requirements_hash(reqs)


def test_stamp_mismatch_on_changed_requirements(tmp_path):
    _fill(tmp_path, ("pretix==2026.8.0",))
    assert not wh.stamp_matches(tmp_path, ("pretix==2026.9.0",))


def test_stamp_mismatch_when_a_wheel_or_the_requirements_file_is_gone(tmp_path):
    reqs = ("pretix==2026.8.0",)
    _fill(tmp_path, reqs)
    (tmp_path / "b-2.0-py3-none-any.whl").unlink()
    assert not wh.stamp_matches(tmp_path, reqs)
    _fill(tmp_path, reqs)
    (tmp_path / wh.REQUIREMENTS_NAME).unlink()
    assert not wh.stamp_matches(tmp_path, reqs)


def test_stamp_mismatch_on_garbage_or_empty_stamp(tmp_path):
    reqs = ("pretix==2026.8.0",)
    _fill(tmp_path, reqs)
    (tmp_path / wh.STAMP_NAME).write_text("{not json")
    assert not wh.stamp_matches(tmp_path, reqs)
    (tmp_path / wh.STAMP_NAME).write_text("[]")
    assert not wh.stamp_matches(tmp_path, reqs)
    (tmp_path / wh.STAMP_NAME).write_text(json.dumps({"hash": wh.requirements_hash(reqs), "wheels": []}))
    assert not wh.stamp_matches(tmp_path, reqs)


def test_requirements_text_keeps_order():
    text = wh.requirements_text(["pretix==2026.8.0", " gunicorn==27.0.1", ""])
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == ["pretix==2026.8.0", "gunicorn==27.0.1"]


# --- ensure_wheelhouse without pip ---------------------------------------------------------------------------


def test_matching_stamp_means_no_pip(tmp_path, monkeypatch):
    reqs = ("pretix==2026.8.0",)
    _fill(tmp_path, reqs)

    def no_pip(*_a, **_k):
        raise AssertionError("pip must not run when the stamp matches")

    monkeypatch.setattr(wh, "_run_pip", no_pip)
    messages: list[str] = []
    assert wh.ensure_wheelhouse(tmp_path, reqs, progress=messages.append) == tmp_path
    assert any("up to date" in m for m in messages)


class FakePip:
    """Stands in for _run_pip: `download` fails once per sdist-only package, `wheel` builds it."""

    def __init__(self, sdist_only: set[str], wheel_suffix: str = "py3-none-any.whl") -> None:
        self.sdist_only = set(sdist_only)
        self.wheel_suffix = wheel_suffix
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], package):
        self.calls.append(args)
        if args[0] == "wheel":
            req = args[-1]
            folder = Path(args[args.index("--wheel-dir") + 1])
            (folder / f"{req.replace('-', '_')}-1.0-{self.wheel_suffix}").write_bytes(b"w")
            return ""
        folder = Path(args[args.index("--dest") + 1])
        built = {p.name.split("-")[0].replace("_", "-") for p in folder.glob("*.whl")}
        for name in sorted(self.sdist_only - built):
            raise wh._PipFailed(
                f"ERROR: Could not find a version that satisfies the requirement {name} (from pretix) "
                f"(from versions: none)\nERROR: No matching distribution found for {name}\n",
                None,
            )
        (folder / "pretix-2026.8.0-py3-none-any.whl").write_bytes(b"p")
        return ""


def test_fill_builds_sdist_only_packages_and_writes_stamp(tmp_path, monkeypatch):
    fake = FakePip({"django-jquery-js", "other-sdist"})
    monkeypatch.setattr(wh, "_run_pip", fake)
    monkeypatch.setattr(wh, "marker_gaps", lambda _dest, *_: [])
    dest = tmp_path / "wheelhouse"
    (dest).mkdir()
    (dest / "stale-0.1-py3-none-any.whl").write_bytes(b"old")

    wh.ensure_wheelhouse(dest, ("pretix==2026.8.0",))

    names = sorted(p.name for p in dest.glob("*.whl"))
    assert names == [
        "django_jquery_js-1.0-py3-none-any.whl",
        "other_sdist-1.0-py3-none-any.whl",
        "pretix-2026.8.0-py3-none-any.whl",
    ]
    assert wh.stamp_matches(dest, ("pretix==2026.8.0",))
    assert "pretix==2026.8.0" in (dest / wh.REQUIREMENTS_NAME).read_text()
    download = next(c for c in fake.calls if c[0] == "download")
    assert "--only-binary=:all:" in download
    assert download[download.index("--python-version") + 1] == "3.11.2"
    assert download[download.index("--implementation") + 1] == "cp"
    assert [download[i + 1] for i, a in enumerate(download) if a == "--platform"] == list(wh.TARGET_PLATFORMS)
    assert "--find-links" in download
    # no temporary folder is left beside the wheelhouse
    assert [p.name for p in tmp_path.iterdir()] == ["wheelhouse"]


def test_fill_rejects_a_host_built_binary_wheel(tmp_path, monkeypatch):
    monkeypatch.setattr(wh, "_run_pip", FakePip({"django-jquery-js"}, wheel_suffix="cp311-cp311-linux_x86_64.whl"))
    with pytest.raises(wh.WheelhouseError) as err:
        wh.ensure_wheelhouse(tmp_path / "wh", ("pretix==2026.8.0",))
    assert err.value.package == "django-jquery-js"
    assert not (tmp_path / "wh" / wh.STAMP_NAME).exists()


def test_fill_names_the_package_when_pip_wheel_fails(tmp_path, monkeypatch):
    def failing(args, package):
        raise wh._PipFailed("error: subprocess-exited-with-error", package)

    monkeypatch.setattr(wh, "_run_pip", failing)
    with pytest.raises(wh.WheelhouseError, match="django-jquery-js") as err:
        wh.ensure_wheelhouse(tmp_path / "wh", ("pretix==2026.8.0",))
    assert err.value.package == "django-jquery-js"


def test_fill_gives_up_when_a_built_package_is_still_missing(tmp_path, monkeypatch):
    def pip(args, package):
        if args[0] == "wheel":
            return ""
        raise wh._PipFailed("ERROR: No matching distribution found for django-jquery-js\n", None)

    monkeypatch.setattr(wh, "_run_pip", pip)
    with pytest.raises(wh.WheelhouseError) as err:
        wh.ensure_wheelhouse(tmp_path / "wh", ("pretix==2026.8.0",))
    assert err.value.package == "django-jquery-js"


def test_fill_reports_marker_gaps(tmp_path, monkeypatch):
    monkeypatch.setattr(wh, "_run_pip", FakePip(set()))
    monkeypatch.setattr(wh, "SDIST_ONLY", ())
    monkeypatch.setattr(wh, "marker_gaps", lambda _dest, *_: ['async-timeout>=4.0.3; python_full_version < "3.11.3"'])
    with pytest.raises(wh.WheelhouseError, match="python_full_version") as err:
        wh.ensure_wheelhouse(tmp_path / "wh", ("pretix==2026.8.0",))
    assert err.value.package == "async-timeout"
    assert not (tmp_path / "wh" / wh.STAMP_NAME).exists()


# --- pip output and metadata ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "ERROR: Could not find a version that satisfies the requirement django-jquery-js "
            "(from django-formset-js-improved==0.5.0.5) (from versions: none)\n"
            "ERROR: No matching distribution found for django-jquery-js\n",
            "django-jquery-js",
        ),
        ("ERROR: No matching distribution found for soupsieve>1.2\n", "soupsieve>1.2"),
        ("ERROR: some other failure\n", None),
    ],
)
def test_missing_package(output, expected):
    assert wh.missing_package(output) == expected


def test_canonical_name():
    assert wh.canonical_name("Django_JQuery.js") == "django-jquery-js"
    assert wh._requirement_name("async-timeout>=4.0.3; python_version<'3.12'") == "async-timeout"
    assert wh._requirement_name("Django[argon2]==5.2.*") == "Django"


def test_marker_gaps_finds_deps_pip_skipped(tmp_path):
    _fake_wheel(
        tmp_path,
        "redis-7.4.1-py3-none-any.whl",
        [
            'async-timeout>=4.0.3; python_full_version < "3.11.3"',
            'hiredis>=3; extra == "hiredis"',
            'exotic; python_full_version < "3.10"',
        ],
    )
    assert wh.marker_gaps(tmp_path) == ['async-timeout>=4.0.3; python_full_version < "3.11.3"']
    assert wh.marker_gaps(tmp_path, python_full_version="3.11.5") == []
    _fake_wheel(tmp_path, "async_timeout-5.0.1-py3-none-any.whl", [])
    assert wh.marker_gaps(tmp_path) == []


def test_wheelhouse_error_carries_package():
    err = wh.WheelhouseError("boom", package="django-jquery-js")
    assert isinstance(err, RuntimeError)
    assert err.package == "django-jquery-js"
    assert str(err) == "boom"
