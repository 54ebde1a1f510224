"""The HA and lab knobs: which compose keys each sets, and what a stack comparison may vary."""

from pathlib import Path

import pytest

from lab.errors import InputError
from lab.experiments.bench_stack_knobs import VARIABLE, variant_params
from lab.stack import hacost, params
from lab.stack.topology import long_running

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def test_defaults_are_the_measured_cuts():
    out = hacost.override(params.validate({}))
    assert out == {"pretix-cron": {"environment": {"CRON_INTERVAL": "300"}},
                   "pretix-worker-1": {"command": ["worker", *hacost.NO_GOSSIP]},
                   "pretix-worker-2": {"command": ["worker", *hacost.NO_GOSSIP]}}
    assert hacost.describe(hacost.knobs(params.validate({}))) == "the HA/lab defaults"
    before = params.validate({"cron_interval": 60, "worker_gossip": True})
    assert hacost.override(before) == {"pretix-cron": {"environment": {"CRON_INTERVAL": "60"}}}
    assert hacost.describe(hacost.knobs(before)) == "cron_interval=60, worker_gossip=True"


def test_each_knob_sets_its_compose_keys():
    p = params.validate({"health_interval": 30, "cron_interval": 120, "worker_gossip": False})
    out = hacost.override(p)
    # every long-running service has a health check (no one-shot job); cron's own is 30 s already: kept
    assert set(out) == set(long_running())
    assert all(entry["healthcheck"] == {"interval": "30s"} for name, entry in out.items() if name != "pretix-cron")
    assert "healthcheck" not in out["pretix-cron"]
    assert out["pretix-cron"]["environment"] == {"CRON_INTERVAL": "120"}
    assert out["pretix-worker-1"]["command"] == ["worker", *hacost.NO_GOSSIP]
    assert "command" not in out["pretix-web-1"] and "environment" not in out["pretix-worker-2"]
    assert "command" not in hacost.override(params.validate({"worker_gossip": True})).get("pretix-worker-1", {})
    assert hacost.changed(hacost.knobs(p)) == {"health_interval": 30, "cron_interval": 120}


def test_health_interval_only_ever_lengthens_compose_yamls_own():
    own = hacost.health_intervals()
    assert (own["redis-sentinel-1"], own["pretix-web-1"], own["pretix-worker-1"], own["pretix-cron"]) == (3, 5, 10, 30)
    out = hacost.override(params.validate({"health_interval": 8}))
    assert out["postgres-primary"]["healthcheck"] == {"interval": "8s"}
    assert out["proxy"]["healthcheck"]["interval"] == "8s"
    assert "healthcheck" not in out["pretix-worker-1"] and "healthcheck" not in out["pretix-cron"]
    assert "pretix-migrate" not in out


@pytest.mark.parametrize("text,seconds", [("3s", 3), ("1m", 60), ("1m30s", 90)])
def test_compose_durations(text, seconds):
    assert hacost._seconds(text) == seconds
    with pytest.raises(ValueError):
        hacost._seconds("1h")


def test_merge_keeps_the_limits_beside_the_knobs():
    limits = {"pretix-worker-1": {"deploy": {"resources": {"limits": {"cpus": "0.4"}}}, "healthcheck": {"retries": 3}}}
    merged = hacost.merge(limits, {"pretix-worker-1": {"healthcheck": {"interval": "9s"}, "command": ["worker"]}})
    assert merged["pretix-worker-1"] == {"deploy": {"resources": {"limits": {"cpus": "0.4"}}},
                                         "healthcheck": {"retries": 3, "interval": "9s"}, "command": ["worker"]}
    assert limits["pretix-worker-1"]["healthcheck"] == {"retries": 3}  # the inputs are not changed


def test_a_variant_is_the_file_over_the_deployed_parameters(tmp_path):
    deployed = params.validate({"web_workers": 3, "health_interval": 10})
    f = tmp_path / "lean.yaml"
    f.write_text("stack:\n  cron_interval: 300\n  worker_gossip: false\n")
    v = variant_params(str(f), deployed)
    assert (v.web_workers, v.health_interval, v.cron_interval, v.worker_gossip) == (3, 10, 300, False)
    assert variant_params("defaults", deployed).health_interval is None


@pytest.mark.parametrize("text,field", [("stack:\n  replication: sync\n", "stack.replication"),
                                        ("stack:\n  https_port: 9443\n", "stack.https_port")])
def test_a_variant_may_not_change_identity_or_durability(tmp_path, text, field):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(InputError) as caught:
        variant_params(str(f), params.validate({}))
    assert caught.value.field == field
    assert "cron_interval" in str(caught.value) and "health_interval" in str(caught.value)


@pytest.mark.parametrize("name", ["stack-before.yaml", "stack-health.yaml"])
def test_the_shipped_variants_are_valid(name):
    v = variant_params(str(STUDIES / name), params.validate({}))
    assert hacost.changed(hacost.knobs(v))


def test_a_missing_file_names_the_flag_and_the_choices():
    with pytest.raises(InputError) as caught:
        variant_params("/nonexistent/lean.yaml", params.validate({}))
    assert caught.value.field == "--compare-stack" and "defaults" in str(caught.value)
    assert "replication" not in VARIABLE
