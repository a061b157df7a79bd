"""campaign.json as a typed, validated config: one-sentence errors, defaults in one place,
schema migrations (the committed schema-1 fixture), import-light constants (issue #11, 7)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from activemil.campaigns import SCHEMA_VERSION, Campaign, Event, migrate
from activemil.campaigns.config import DEFAULT_MIN_TRAIN, CampaignConfig
from activemil.cli.app import app
from activemil.errors import InputError, StateError

FIXTURES = Path(__file__).parent / "fixtures"


def _edit(camp: Campaign, change) -> None:
    cfg = json.loads((camp.path / "campaign.json").read_text())
    change(cfg)
    (camp.path / "campaign.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c["target"].pop("name"), "target.name"),
        (lambda c: c["ingest"].update(composition_tolerance="loose"),
         "ingest.composition_tolerance"),
        (lambda c: c["surrogate"].update(min_train="eight"), "surrogate.min_train"),
        (lambda c: c.update(surrogate=None), "surrogate"),
        (lambda c: c["surrogate"].update(kind="forest"), "surrogate.kind"),
        (lambda c: c["acquisition"].update(alpha=0.3), "acquisition.alpha"),
        (lambda c: c["surrogate"].update(min_trian=3), "surrogate.min_trian"),
        (lambda c: c["space"].update(step=0.3), "space"),
    ],
)
def test_broken_config_is_one_sentence_naming_the_key(camp, change, key):
    _edit(camp, change)
    with pytest.raises(StateError) as info:
        Campaign.open(camp.path)
    msg = str(info.value)
    assert f"key {key} " in msg and msg.endswith(".") and "\n" not in msg
    assert "Traceback" not in msg and "pydantic" not in msg


def test_init_refuses_bad_surrogate_options(tmp_path):
    res = CliRunner().invoke(app, [
        "init", str(tmp_path / "c"), "--elements", "Ni,Fe", "--step", "0.5", "--target", "eta",
        "--minimize", "--surrogate-options", "n_members=abc"])
    assert res.exit_code == 2 and "surrogate.settings.n_members" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "c").exists()


def test_create_validates_before_writing(tmp_path, make_campaign):
    with pytest.raises(InputError, match="surrogate.min_train"):
        make_campaign(tmp_path / "c", surrogate={"min_train": 0})
    assert not (tmp_path / "c").exists()


def test_defaults_come_from_the_config_and_setting_is_a_thin_accessor(camp):
    cfg = json.loads((camp.path / "campaign.json").read_text())
    assert cfg["schema_version"] == SCHEMA_VERSION
    assert cfg["surrogate"]["min_train"] == DEFAULT_MIN_TRAIN == camp.min_train
    assert camp.setting("acquisition", "policy", "x") == "kg"
    assert camp.setting("ingest", "outlier_factor") == CampaignConfig.model_fields[
        "ingest"].default_factory().outlier_factor
    assert camp.setting("nope", "nothing", 7) == 7
    assert isinstance(camp.cfg, CampaignConfig) and camp.maximize is False


def test_previous_schema_fixture_opens_and_migrates_with_one_sentence(tmp_path):
    path = tmp_path / "old"
    shutil.copytree(FIXTURES / "schema1", path)
    original = (path / "campaign.json").read_bytes()
    camp = Campaign.open(path)
    assert len(camp.notices) == 1 and "schema 1" in camp.notices[0]
    assert (path / "campaign.json").read_bytes() == original  # reading never writes
    state = camp.state()
    assert len(state.batches) == 1 and len(camp.observations(state)) == 3
    camp.append([Event.new("abandoned", state.in_flight_ids[0], "b001", 1, reason="test")])
    cfg = json.loads((path / "campaign.json").read_text())
    assert cfg["schema_version"] == SCHEMA_VERSION and "outlier_factor" in cfg["ingest"]
    assert (path / "campaign.schema1.json").read_bytes() == original
    again = Campaign.open(path)
    assert again.notices == [] and again.config == camp.config


def test_migrate_is_idempotent():
    raw = json.loads((FIXTURES / "schema1" / "campaign.json").read_text())
    once, v = migrate(raw)
    twice, v2 = migrate(once)
    assert v == 1 and v2 == SCHEMA_VERSION and once == twice


def test_constants_import_without_torch_and_campaigns_without_fcntl():
    code = (
        "import sys; sys.modules['fcntl'] = None\n"
        "from activemil.surrogates import ALPHAS, QUANTILE_LEVELS, SURROGATE_KINDS\n"
        "import activemil.campaigns\n"
        "from activemil.campaigns.proposal import POLICIES\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "print(len(POLICIES), len(SURROGATE_KINDS))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       check=False)
    assert p.returncode == 0, p.stderr


def test_surrogate_kinds_match_the_registry():
    from activemil.surrogates import KINDS, SURROGATE_KINDS

    assert tuple(KINDS) == SURROGATE_KINDS
