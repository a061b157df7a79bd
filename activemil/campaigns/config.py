"""``campaign.json`` as one typed, validated object (pydantic v2), with schema migrations.

Every default of a campaign lives here, once. :func:`load_config` validates a raw JSON object
(after :func:`migrate`) and turns any problem into one sentence naming the key and the fix; it
runs at ``init`` and on every open. The file stays plain, indented JSON with every key written
out, so it reads without activemil.

Schema history (:data:`MIGRATIONS` upgrades step by step, idempotently):

* 1: activemil 0.1.0; ``ingest`` holds ``max_abs_value`` and ``composition_tolerance``.
* 2: ``ingest`` gains ``outlier_factor`` (refuse values that far off the campaign's own scale)
  and ``max_rows`` (the stated size limit of one ingested file); every section is written in full.
* 3: ``priors``, the related measured tables the model learns from (``activemil init --prior``);
  empty for older campaigns.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from activemil.errors import InputError, StateError
from activemil.space import DesignSpace
from activemil.surrogates.names import CALIBRATIONS, SURROGATE_KINDS
from activemil.surrogates.prediction import ALPHAS


def _light_module(name: str) -> ModuleType:
    """Import the single module ``name`` without running its package's ``__init__``.

    ``activemil/acquisition/__init__.py`` imports torch and BoTorch eagerly; its import-light
    ``names`` module is loaded on its own (and registered, so a later package import reuses it).
    """
    if name in sys.modules:
        return sys.modules[name]
    import activemil

    path = Path(activemil.__file__).parent.joinpath(*name.split(".")[1:]).with_suffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


POLICIES: tuple[str, ...] = _light_module("activemil.acquisition.names").POLICIES
#: posterior variants of the per-round model choice (``propose --model`` pins one)
POSTERIOR_MODELS: tuple[str, ...] = _light_module("activemil.acquisition.names").POSTERIOR_MODELS

SCHEMA_VERSION = 3
CONFIG_FILE = "campaign.json"

DEFAULT_MIN_TRAIN = 8
DEFAULT_MAX_ABS_VALUE = 1e9
DEFAULT_COMPOSITION_TOLERANCE = 1e-3
DEFAULT_OUTLIER_FACTOR = 100.0
DEFAULT_MAX_ROWS = 2_000_000


class _Section(BaseModel):
    """A section of ``campaign.json``: strict types, unknown keys refused (typos)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)


class TargetConfig(_Section):
    name: str = Field(min_length=1)
    direction: Literal["maximize", "minimize"] = "maximize"
    unit: str = ""

    @field_validator("name")
    @classmethod
    def _stripped(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class StructureConfig(_Section):
    recipe: str = "fcc111"
    settings: dict[str, Any] = Field(default_factory=dict)


class EncoderConfig(_Section):
    name: str = "zones"
    settings: dict[str, Any] = Field(default_factory=dict)


class FeaturizeConfig(_Section):
    mode: Literal["sampled", "expected"] = "sampled"
    n_sites: int | None = Field(default=None, ge=1)
    seed: int = 0
    jobs: int = Field(default=1, ge=1)


class SurrogateSettings(BaseModel):
    """Settings passed to ``make_surrogate``; the common ones are typed, others pass through."""

    model_config = ConfigDict(extra="allow", strict=True)
    n_members: int | None = Field(default=None, ge=1)
    n_folds: int | None = Field(default=None, ge=2)
    seed: int | None = None
    calibration: Literal[CALIBRATIONS] | None = None  # type: ignore[valid-type]
    split_fraction: float | None = Field(default=None, gt=0, lt=1)


class SurrogateConfig(_Section):
    kind: Literal[SURROGATE_KINDS] = "mil"  # type: ignore[valid-type]
    min_train: int = Field(default=DEFAULT_MIN_TRAIN, ge=1)
    settings: SurrogateSettings = Field(default_factory=SurrogateSettings)


class AcquisitionConfig(_Section):
    policy: Literal[POLICIES] = "kg"  # type: ignore[valid-type]  # measured: docs/benchmarks.md
    alpha: float = 0.1
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alpha")
    @classmethod
    def _calibrated(cls, v: float) -> float:
        for a in ALPHAS:
            if abs(v - a) < 1e-9:
                return a
        raise ValueError(f"must be one of {', '.join(f'{a:g}' for a in ALPHAS)}")


class IngestConfig(_Section):
    max_abs_value: float = Field(default=DEFAULT_MAX_ABS_VALUE, gt=0)
    composition_tolerance: float = Field(default=DEFAULT_COMPOSITION_TOLERANCE, gt=0, lt=0.5)
    outlier_factor: float = Field(default=DEFAULT_OUTLIER_FACTOR, gt=1)
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1)


class PriorConfig(_Section):
    """One prior table: its stored copy (relative to the campaign), where it came from, its value
    column, the SHA-256 of its bytes, its rows and elements (see ``campaigns.priors``)."""

    file: str = Field(min_length=1)
    source: str = ""
    target: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    rows: int = Field(ge=2)
    elements: list[str] = Field(min_length=1)

    @field_validator("file")
    @classmethod
    def _relative(cls, v: str) -> str:
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("must be a path inside the campaign directory")
        return v


class CampaignConfig(BaseModel):
    """The whole ``campaign.json``. Unknown top-level keys are kept (for newer tools)."""

    model_config = ConfigDict(extra="allow", strict=True, validate_default=True)
    schema_version: int = SCHEMA_VERSION
    name: str = ""
    created: str = ""
    activemil_version: str = ""
    space: dict[str, Any]
    target: TargetConfig
    structure: StructureConfig = Field(default_factory=StructureConfig)
    encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    featurize: FeaturizeConfig = Field(default_factory=FeaturizeConfig)
    surrogate: SurrogateConfig = Field(default_factory=SurrogateConfig)
    acquisition: AcquisitionConfig = Field(default_factory=AcquisitionConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    priors: list[PriorConfig] = Field(default_factory=list)

    @field_validator("space")
    @classmethod
    def _space(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            return DesignSpace.from_dict(v).to_dict()
        except (InputError, KeyError, TypeError, ValueError) as exc:
            what = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc).rstrip(".")
            raise ValueError(f"is not a valid design space ({what})") from None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON object with every key written out (defaults included)."""
        d = self.model_dump(mode="json")
        d["surrogate"]["settings"] = {
            k: v for k, v in d["surrogate"]["settings"].items() if v is not None}
        return d


# ---------------------------------------------------------------------------- migrations
def _v1_to_v2(cfg: dict[str, Any]) -> dict[str, Any]:
    ingest = cfg.get("ingest")
    if isinstance(ingest, dict):
        ingest.setdefault("outlier_factor", DEFAULT_OUTLIER_FACTOR)
        ingest.setdefault("max_rows", DEFAULT_MAX_ROWS)
    return cfg


def _v2_to_v3(cfg: dict[str, Any]) -> dict[str, Any]:
    cfg.setdefault("priors", [])
    return cfg


#: version -> step that upgrades a config of that version by one
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2, 2: _v2_to_v3}


def migrate(cfg: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """Upgrade a raw config to :data:`SCHEMA_VERSION`; returns ``(config, original_version)``.

    Idempotent: a current config is returned unchanged. The caller checks the version type.
    """
    cfg = dict(cfg)
    original = version = int(cfg["schema_version"])
    while version < SCHEMA_VERSION:
        cfg = MIGRATIONS[version](cfg)
        version += 1
        cfg["schema_version"] = version
    return cfg, original


# ---------------------------------------------------------------------------- errors
_FIX: dict[str, str] = {
    "target.name": 'set it to the measured property, e.g. "overpotential"',
    "target.direction": 'use "maximize" or "minimize"',
    "surrogate.kind": f"use one of {', '.join(SURROGATE_KINDS)}",
    "acquisition.policy": f"use one of {', '.join(POLICIES)}",
    "acquisition.alpha": f"use one of {', '.join(f'{a:g}' for a in ALPHAS)}",
    "surrogate.settings.calibration": f"use one of {', '.join(CALIBRATIONS)}",
    "featurize.mode": 'use "sampled" or "expected"',
}


def _default_of(loc: tuple) -> Any:
    model: Any = CampaignConfig
    default: Any = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        info = fields[part]
        if info.is_required():
            return None
        default = info.get_default(call_default_factory=True)
        model = info.annotation
    if isinstance(default, BaseModel):
        return "{...}"
    return default


def describe(exc: ValidationError, where: str) -> str:
    """One sentence for the first problems of ``exc`` (key, what is wrong, how to fix)."""
    parts = []
    errors = exc.errors()
    for err in errors[:3]:
        loc = tuple(err["loc"])
        key = ".".join(str(x) for x in loc) or "(top level)"
        typ = err["type"]
        if typ == "missing":
            what = "is missing"
        elif typ == "extra_forbidden":
            what = "is not a known setting (a typo?)"
        elif typ in ("dict_type", "model_type", "model_attributes_type"):
            what = f"must be a JSON object of settings (got {err.get('input')!r})"
        else:
            what = err["msg"].replace("Value error, ", "").replace("Input should be", "must be")
            what = what[0].lower() + what[1:]
            if typ != "value_error":
                what += f" (got {err.get('input')!r})"
        fix = _FIX.get(key)
        if fix is None:
            default = _default_of(tuple(loc))
            if typ == "extra_forbidden":
                fix = "remove it or fix its spelling"
            elif default == "{...}":
                fix = "fix it, or delete the key to use the defaults"
            elif default is not None:
                fix = f"fix it, or delete the key to use the default {default!r}"
            else:
                fix = "fix it"
        parts.append(f"key {key} {what}; {fix}")
    more = f" (and {len(errors) - 3} more problem(s))" if len(errors) > 3 else ""
    return f"{where}: " + "; ".join(parts) + more + "."


def load_config(raw: Any, where: str = CONFIG_FILE, error: type = StateError) -> CampaignConfig:
    """Validate a raw ``campaign.json`` object of the current schema into a config object."""
    if not isinstance(raw, dict):
        raise error(f"{where} does not hold a JSON object; restore it from git.")
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        raise error(describe(exc, where)) from None
