"""Journeys by name (lab.load.journey): the built-ins register themselves, a run and the capacity search look them
up, an unknown name is refused in one line naming the known ones; and a run's one way in, execute(params, ctx)."""

from __future__ import annotations

import inspect
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from lab.experiments.capacity import journey_builder
from lab.experiments.context import LabContext
from lab.experiments.run import RunParamsError, execute, validate_load
from lab.load.api import ApiJourney
from lab.load.http import Stepper
from lab.load.journey import Journey, JourneySetting, UnknownJourneyError, build_journey, journeys
from lab.load.recorder import Recorder
from lab.load.shop import ShopJourney
from lab.pretix.buyers import Buyer, password_for
from lab.pretix.seed import Catalogue

ROOT = Path(__file__).resolve().parent.parent
BUYERS = [Buyer(identifier=f"C{i}", email=f"b{i}@pretix-lab.invalid", name="Ana Silva", has_password=i < 2)
          for i in range(4)]


def _setting(tmp_path: Path, **changes) -> JourneySetting:
    values = dict(base_url="https://127.0.0.1:8443", tls=ssl.create_default_context(), organizer="techpt",
                  event="techpt26", stepper=Stepper(Recorder.requests(tmp_path, "r"), "api"), buyers=BUYERS,
                  item_weights={7: 1.0}, api_token="token-1", buyer_secret="s3cret", login_share=0.5,
                  extra_headers={"Host": "pretix.lab"})
    return JourneySetting(**{**values, **changes})


def test_the_built_in_journeys_register_themselves_on_first_lookup():
    """Importing the registry alone is enough: the first lookup imports the built-ins, which register."""
    code = ("import sys; from lab.load.journey import journeys; assert 'lab.load.shop' not in sys.modules; "
            "print(journeys.names(), journeys.get('shop').__module__)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "['api', 'shop'] lab.load.shop"
    assert journeys.get("api") is ApiJourney and journeys.get("shop") is ShopJourney
    assert ApiJourney.name == "api" and ShopJourney.name == "shop"


def test_an_unknown_journey_is_refused_in_one_line_naming_the_known_ones():
    with pytest.raises(UnknownJourneyError, match=r"^No journey named 'carrier-pigeon'; known: api, shop$"):
        build_journey("carrier-pigeon", None)  # type: ignore[arg-type]
    with pytest.raises(RunParamsError) as refused:
        validate_load({"journey": "carrier-pigeon"}, Catalogue())
    assert str(refused.value) == "invalid load parameters: journey: No journey named 'carrier-pigeon'; known: api, shop"
    assert refused.value.field == "journey" and refused.value.allowed == ("api", "shop")
    assert validate_load({"journey": "shop"}).journey == "shop"


def test_the_capacity_builder_refuses_an_unknown_journey_before_it_asks_the_stack():
    with pytest.raises(UnknownJourneyError, match="known: api, shop"):
        journey_builder(None, "carrier-pigeon")  # no stack: a lookup on it would fail otherwise


def test_each_journey_builds_itself_from_one_setting(tmp_path):
    setting = _setting(tmp_path)
    api = build_journey("api", setting)
    assert isinstance(api, ApiJourney)
    assert api.path == "/api/v1/organizers/techpt/events/techpt26/orders/"
    assert api.headers == {"Authorization": "Token token-1", "Host": "pretix.lab"}
    assert (api.base_url, api.items, api.buyers, api.stepper) == (setting.base_url, [7], BUYERS, setting.stepper)
    shop = build_journey("shop", setting)
    assert isinstance(shop, ShopJourney)
    assert (shop.event_path, shop.login_share, shop.items) == ("/techpt/techpt26/", 0.5, [7])
    assert [b.identifier for b in shop.login_pool] == ["C0", "C1"]
    assert shop.password(BUYERS[0]) == password_for("s3cret", BUYERS[0].email)  # derived, never stored
    with pytest.raises(ValueError, match="login_share > 0 but no buyer has a password"):
        build_journey("shop", _setting(tmp_path / "none", buyers=BUYERS[2:]))


def test_a_plugin_journey_is_one_registration_away(tmp_path):
    """What a third journey needs: a Journey subclass registered under a name. The run's parameters accept it and
    build_journey makes it, with no branch on the name anywhere."""

    class Kiosk(Journey):
        def __init__(self, setting: JourneySetting):
            self.setting = setting

        @classmethod
        def build(cls, setting: JourneySetting) -> Kiosk:
            return cls(setting)

    journeys.register("kiosk", Kiosk)
    try:
        assert validate_load({"journey": "kiosk"}).journey == "kiosk"
        setting = _setting(tmp_path)
        built = build_journey("kiosk", setting)
        assert isinstance(built, Kiosk) and built.setting is setting
        with pytest.raises(UnknownJourneyError, match="known: api, kiosk, shop"):
            journeys.get("tram")
    finally:
        journeys.unregister("kiosk")
    with pytest.raises(TypeError, match="must be a Journey subclass"):
        journeys.register("not-one", dict)  # type: ignore[arg-type]
    assert "kiosk" not in journeys and "not-one" not in journeys


def test_a_run_has_one_way_in(tmp_path):
    """execute(params, ctx, *, root, log): the run's parameters and one RunContext, nothing unpacked."""
    signature = inspect.signature(execute)
    assert [(p.name, p.kind) for p in signature.parameters.values()] == [
        ("params", inspect.Parameter.POSITIONAL_OR_KEYWORD), ("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("root", inspect.Parameter.KEYWORD_ONLY), ("log", inspect.Parameter.KEYWORD_ONLY)]
    # the context of a deployment nobody seeded is refused before the stack is asked anything
    unseeded = LabContext(access=None, docker=None, directory=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no seeded buyers for this deployment: run `lab seed` first"):
        unseeded.for_run(Catalogue())


def test_a_run_context_shows_no_key_in_its_repr():
    from lab.experiments.context import RunContext
    from lab.pretix.bootstrap import PretixAccess

    access = PretixAccess(base_url="https://127.0.0.1:8443", organizer="techpt", api_token="tok-SECRET",
                          admin_email="a@x.invalid", admin_password="pw-SECRET", ca_file="/nonexistent")
    shown = repr(RunContext(access=access, docker=None, buyers=BUYERS, catalogue_ids={}, event="techpt26",
                            buyer_secret="key-SECRET"))
    assert "SECRET" not in shown and "techpt26" in shown
