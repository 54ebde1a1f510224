"""The documentation: a README that is a front door, and a data dictionary that cannot go stale silently.

The columns and keys are taken from the lab's own writers (their schemas, the synthetic study written with them,
the functions that build each JSON record), never from a list typed here: a writer that gains a column or a key
fails this test until docs/reference.md lists it, and a column the dictionary names that no writer writes fails too.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from study_fixture import build_study

from lab.common.paths import ROOT

README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "reference.md"
FINDINGS = ROOT / "docs" / "findings.md"
README_LIMIT = 12_000  # bytes


# ------------------------------------------------------------------------------------------------------ helpers
def section(title: str) -> str:
    """The text under the reference's heading `### <title>` (or `## <title>`), up to the next heading."""
    lines = REFERENCE.read_text().splitlines()
    starts = [i for i, line in enumerate(lines) if re.fullmatch(rf"#{{2,3}} {re.escape(title)}", line)]
    assert starts, f"docs/reference.md has no heading '### {title}'"
    body = []
    for line in lines[starts[0] + 1:]:
        if line.startswith(("## ", "### ")):
            break
        body.append(line)
    return "\n".join(body)


def named(text: str) -> set[str]:
    """Every `name` written in backticks (a list like `a`, `b` names both)."""
    return set(re.findall(r"`([^`]+)`", text))


def tables(text: str) -> list[list[list[str]]]:
    """Markdown tables of a text: rows of cells (header first, the --- row left out)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def documented_columns(title: str) -> set[str]:
    """The names in the first cell of the section's `| column | ...` table."""
    column_tables = [t for t in tables(section(title)) if t[0][0] == "column"]
    assert column_tables, f"the section {title} has no '| column |' table"
    return {name for row in column_tables[0][1:] for name in named(row[0])}


def first_cells(title: str) -> set[str]:
    """Names in the first cell of every table row of a section."""
    return {name for table in tables(section(title)) for row in table[1:] for name in named(row[0])}


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    return build_study(tmp_path_factory.mktemp("docs") / "study")


def written_columns(run_dir: Path, dataset: str) -> list[str]:
    parts = sorted((run_dir / dataset).glob("part-*.parquet"))
    assert parts, f"the synthetic run {run_dir.name} has no {dataset}"
    return pq.read_schema(parts[0]).names


# ------------------------------------------------------------------------------------------------------- README
def test_the_readme_is_a_front_door_of_at_most_12_kb():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; at most {README_LIMIT}: move detail to docs/"
    text = README.read_text()
    for target in ("docs/reference.md", "docs/findings.md"):
        assert target in text and (ROOT / target).is_file(), target


def test_the_readme_starts_with_make_study_and_make_test():
    text = README.read_text()
    before_any_section = text.split("\n## ", 1)[0]
    blocks = re.findall(r"```(?:sh|bash)?\n(.*?)```", before_any_section, re.S)
    assert blocks, "the README's first lines hold no command block"
    commands = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines()]
    assert [c for c in commands if c] == ["make study", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("study", "test"):
        assert re.search(rf"^{target}:", makefile, re.M), f"the Makefile has no `{target}` target"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("doc", [README, REFERENCE, FINDINGS], ids=lambda p: p.name)
def test_every_link_between_the_docs_lands_on_a_file_and_heading(doc):
    for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)?(?:#([^)\s]+))?\)", doc.read_text()):
        if not target and not anchor:
            continue
        path = (doc.parent / target).resolve() if target else doc
        assert path.is_file(), f"{doc.name} links to {target}, which does not exist"
        if anchor:
            headings = {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}
            assert anchor in headings, f"{doc.name} links to {path.name}#{anchor}, which has no such heading"


# ------------------------------------------------------------------------------------------------ data dictionary
@pytest.mark.parametrize("dataset", ["attempts.parquet", "requests.parquet", "metrics.parquet", "faults.parquet"])
def test_every_column_the_writers_produce_is_in_the_data_dictionary_and_no_other(study, dataset):
    """The synthetic study is written with the lab's own recorders and monitor writer: the real schemas."""
    columns = written_columns(study / "runs" / "faults-api", dataset)
    documented = documented_columns(dataset)
    assert set(columns) - documented == set(), f"{dataset}: columns missing from docs/reference.md"
    assert documented - set(columns) == set(), f"{dataset}: docs/reference.md lists columns no writer writes"


def test_the_proxy_log_and_customer_columns_are_in_the_data_dictionary_and_no_other():
    from lab.evidence.runlogs import PROXY_ACCESS_SCHEMA
    from lab.pretix.buyers import Buyer

    for dataset, columns in (("proxy_access.parquet", PROXY_ACCESS_SCHEMA.names),
                             ("customers.parquet", list(Buyer.model_fields))):
        assert set(columns) == documented_columns(dataset), dataset


def test_every_metric_a_run_recorded_is_in_the_data_dictionary(study):
    """The metric names of the recorded real runs (tests/fixtures/real-study) and of the synthetic study."""
    folders = [*sorted((ROOT / "tests/fixtures/real-study/runs").iterdir()), *sorted((study / "runs").iterdir())]
    recorded = set()
    for folder in folders:
        if (folder / "metrics.parquet").is_dir():
            recorded |= set(pd.read_parquet(folder / "metrics.parquet", columns=["metric"])["metric"])
    assert len(recorded) > 20
    assert recorded - named(section("metrics.parquet")) == set()


def _monitor(name: str):
    """A name of the monitor's modules, wherever the monitor keeps it (lab.evidence.monitor, or its parts)."""
    import importlib
    import pkgutil

    import lab.evidence

    for info in pkgutil.walk_packages(lab.evidence.__path__, "lab.evidence."):
        module = importlib.import_module(info.name)
        if hasattr(module, name):
            return getattr(module, name)
    raise AssertionError(f"no {name} in lab.evidence: the monitor changed; derive its metric names anew here")


def test_every_metric_the_samplers_parse_is_in_the_data_dictionary():
    """The names the monitor's parsers emit, fed one sample of each source, and the PostgreSQL query's names."""
    stats = {"cpu_stats": {"cpu_usage": {"total_usage": 2e9}, "system_cpu_usage": 4e9, "online_cpus": 2,
                           "throttling_data": {"throttled_time": 1e9}},
             "memory_stats": {"usage": 300, "limit": 1000, "stats": {"cache": 100}},
             "networks": {"eth0": {"rx_bytes": 1, "tx_bytes": 2}}}
    previous = {**stats, "cpu_stats": {**stats["cpu_stats"], "cpu_usage": {"total_usage": 1e9},
                                       "system_cpu_usage": 2e9}}
    info = "\n".join(["role:master", "master_link_status:up", "db0:keys=3,expires=0",
                      *(f"{key}:1" for key in _monitor("REDIS_INFO_KEEP"))])
    stub = "Active connections: 1 \nserver accepts handled requests\n 1 1 1 \nReading: 0 Writing: 1 Waiting: 0 \n"
    sentinel = ["declared 10.0.0.21", "10.0.0.21", "6379", "flags", "master", "num-slaves", "1",
                "num-other-sentinels", "2", "config-epoch", "0"]
    rows = [*_monitor("docker_stats_rows")(stats, previous), *_monitor("parse_redis_info")(info),
            *_monitor("parse_stub_status")(stub), *_monitor("parse_sentinel_block")(sentinel),
            *_monitor("parse_redis_queues")(["0"] * 15)]
    names = {metric for metric, _labels, _value in rows}
    names |= set(re.findall(r"SELECT \d+, '([a-z_]+)'", _monitor("POSTGRES_QUERY")))
    names |= {p for p in _monitor("PRETIX_KEEP_PREFIXES")} | {"pretix_model_instances", _monitor("SAMPLER_ERROR")}
    assert len(names) > 50
    assert names - named(section("metrics.parquet")) == set()


def _run_json_top_level_keys() -> set[str]:
    """The keys of the dict literal the lab writes as run.json (the one with both `run_id` and
    `requests_vs_proxy`), read from the source wherever it lives."""
    found = set()
    for path in (ROOT / "lab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
                if {"run_id", "requests_vs_proxy"} <= keys:
                    found |= keys
    assert found, "no dict literal with run_id and requests_vs_proxy in lab/: where is run.json written now?"
    return found


def test_every_key_of_run_json_is_in_the_data_dictionary(tmp_path):
    from lab.evidence.runfolder import RunFolder
    from lab.evidence.runlogs import reconcile
    from lab.experiments.run import FaultsAlongside
    from lab.faults.probes import Verdict
    from lab.faults.runner import FaultOutcome
    from lab.load.runner import RunSummary

    one = pd.DataFrame({"request_id": ["lab-1"], "status": [200]})
    keys = (_run_json_top_level_keys() | {f.name for f in dataclasses.fields(RunSummary)}
            | set(FaultsAlongside(None, None, Path("."), "", None).record())
            | {f.name for f in dataclasses.fields(FaultOutcome)} | {f.name for f in dataclasses.fields(Verdict)}
            | set(reconcile(one, one))
            | set(json.loads(RunFolder(tmp_path).write_meta({}).read_text())))  # what the folder adds (`schema`)
    for recorded in sorted((ROOT / "tests/fixtures/real-study/runs").glob("*/run.json")):
        keys |= set(json.loads(recorded.read_text()))  # what real runs recorded
    assert keys - named(section("run.json")) == set()


def test_every_key_of_audit_json_is_in_the_data_dictionary():
    from lab.evidence.audit_rules import AuditResult, AuditWindow, RuleResult, audit

    result = audit(pd.DataFrame([{"attempt_id": "a1", "outcome": "purchased", "order_code": "O1", "error_kind": None}]),
                   pd.DataFrame([{"code": "O1", "status": "p", "attempt_id": "a1"}]),
                   pd.DataFrame([{"order_code": "O1", "item_id": 1}]),
                   pd.DataFrame([{"quota_id": 10, "size": 2, "items": [1]}]),
                   window=AuditWindow(start=0.0, end=1.0))
    written = json.loads(result.to_json())
    keys = set(written) | set(written["totals"]) | set(written["window"]) | set(RuleResult.model_fields)
    assert set(AuditResult.model_fields) | set(AuditResult.model_computed_fields) <= keys
    assert keys - named(section("audit.json")) == set()


def test_every_key_of_headline_json_is_in_the_data_dictionary(study):
    from lab.analysis.capacity import interval
    from lab.analysis.sellout import sellout_headline
    from lab.analysis.summary import summarise

    headline = summarise(study).headline()
    row = {"run_id": "r", "journey": "api", "kind": "spike", "product": "p", "quota": 1, "sold": 1,
           "refused_sold_out": 0, "oversold": 0, "false_availability": 0, "quota_reached_s": 1.0}
    keys = (set(headline) | set(headline["audit"]) | {k for v in headline["verdicts"] for k in v}
            | set(interval(pd.Series([400.0, 420.0, 440.0]))) | set(sellout_headline(pd.DataFrame([row]))["api"]))
    assert keys - named(section("headline.json")) == set()


def test_every_file_of_a_run_folder_is_in_the_data_dictionary(study):
    """Every name RunFolder gives a run's files (the one place that names them), and what the synthetic run holds."""
    from lab.evidence.runfolder import RunFolder

    files = {value for name, value in vars(RunFolder).items() if name.isupper() and isinstance(value, str)}
    assert {"run.json", "attempts.parquet", "logs"} <= files
    files |= {p.name for p in (study / "runs" / "faults-api").iterdir()}
    listed = first_cells("The run folder")
    assert {f for f in files if not ({f, f"{f}/"} & listed or any(n.startswith(f"{f}/") for n in listed))} == set()
