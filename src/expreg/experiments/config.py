"""Experiment configurations: pydantic models, presets, TOML loading, hashes.

An experiment's configuration is data: a frozen pydantic model whose fields
are the data regime (n, d), the network choices, the seeds and the budgets.
Each experiment module defines one ``Config`` subclass of ``ExperimentConfig``
and a ``PRESETS`` dict ("quick", "full") of field overrides.

The configuration hash (``config_hash``) is the first 12 hex digits of the
SHA-256 of the canonical JSON of every field; together with the task's
parameters and seed it keys a run in the result table (``store``).
"""

from __future__ import annotations

import enum
import hashlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..core.activations import ACTIVATIONS
from ..core.choices import DType as DTypeChoice
from ..core.choices import Init as InitChoice
from ..core.choices import LabelKind
from ..core.choices import Scaling as ScalingChoice
from ..core.initialisation import check_width
from ..core.model import ExpNet

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

# Field types of the choices (``expreg.core.choices``): Literals of their string
# values, so fields hold plain strings and the configuration hashes of
# ``model_dump(mode="json")`` do not depend on how a value was given.
# The type checker sees them as str (they are built at run time from the registries).
if TYPE_CHECKING:
    Activation: TypeAlias = str
    Init: TypeAlias = str
    Scaling: TypeAlias = str
    LabelKindField: TypeAlias = str
    DType: TypeAlias = str
else:
    Activation = ACTIVATIONS.literal()
    Init = InitChoice.literal()
    Scaling = ScalingChoice.literal()
    LabelKindField = LabelKind.literal()
    DType = DTypeChoice.literal()


#: Largest seed a configuration accepts: seeds are stored in the result table as signed 64-bit integers.
MAX_SEED = 2**63 - 1


class ExperimentConfig(BaseModel):
    """Fields every experiment shares.

    Attributes
    ----------
    d : int
        Input dimension; data lie on the unit sphere S^{d-1} (``expreg.data``).
    seeds : list of int
        One run per seed; the seed draws the data set and the initialisation.
    label_kind : {"uniform", "sign"}
        Labels uniform on [-1, 1] or random signs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Experiment name and version; bump the version when run_one's meaning changes.
    name: ClassVar[str] = "base"
    version: ClassVar[int] = 1

    d: int = Field(16, ge=1, le=4096)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    label_kind: LabelKindField = "uniform"

    @model_validator(mode="before")
    @classmethod
    def _choices_as_strings(cls, data: Any) -> Any:
        """Enum members of ``expreg.choices`` (str enums) become their strings, on every pydantic version."""

        def plain(v: Any) -> Any:
            if isinstance(v, enum.Enum):
                return v.value
            if isinstance(v, list | tuple):
                return type(v)(plain(x) for x in v)
            return v

        return {k: plain(v) for k, v in data.items()} if isinstance(data, dict) else data

    @field_validator("seeds")
    @classmethod
    def _seeds_ok(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("at least one seed is needed")
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {v}")
        if max(v) > MAX_SEED:
            raise ValueError(f"seeds must be at most 2^63 - 1 (stored as 64-bit integers), got {max(v)}")
        return v

    @property
    def versioned_name(self) -> str:
        """``name-vN``, e.g. ``width-v1``."""
        return f"{self.name}-v{self.version}"

    def canonical_json(self) -> str:
        """Every field (and the versioned name) as sorted JSON: the hashed text."""
        return canonical_json(self.versioned_name, self.model_dump(mode="json"))

    @property
    def config_hash(self) -> str:
        """First 12 hex digits of SHA-256 of ``canonical_json()`` (``fields_hash``)."""
        return fields_hash(self.versioned_name, self.model_dump(mode="json"))


def canonical_json(versioned_name: str, fields: dict[str, Any]) -> str:
    """The hashed text of a configuration: its versioned name and fields (as JSON values), sorted JSON."""
    return json.dumps({"experiment": versioned_name, **fields}, sort_keys=True)


def fields_hash(versioned_name: str, fields: dict[str, Any]) -> str:
    """The configuration hash of these fields: first 12 hex digits of SHA-256 of ``canonical_json``.

    Applied to the fields a ``config.json`` recorded, it gives the hash the
    run computed when it wrote them (an older version's fewer fields included).
    """
    return hashlib.sha256(canonical_json(versioned_name, fields).encode()).hexdigest()[:12]


def check_widths(v: list[int], name: str = "widths", init: str = "coupled") -> list[int]:
    """Widths are integers >= 2 in increasing order, each obeying the width rule of ``init``
    (``initialisation.check_width``: even for coupled initialisation)."""
    if any(m < 2 for m in v):
        raise ValueError(f"{name} must be integers >= 2, got {v}")
    for m in v:
        check_width(m, init, name)
    if sorted(set(v)) != list(v):
        raise ValueError(f"{name} must be distinct and increasing, got {v}")
    return v


class TrainingConfig(ExperimentConfig):
    """Fields the training experiments share (convergence, kernel, lazy, realdata).

    Attributes
    ----------
    widths : list of int
        The widths m trained, increasing (``check_widths``, against ``init``).
    init : {"coupled", "gaussian"}
    epsilon : float
        Stop once ||u - y||_2 <= epsilon.
    max_steps : int
        Step budget of each run.
    """

    init: Init = "coupled"
    widths: list[int] = Field(default_factory=lambda: [256, 1024, 4096, 16384])
    epsilon: float = Field(1e-3, gt=0)
    max_steps: int = Field(3000, ge=1)

    @field_validator("widths", "train_widths", check_fields=False)
    @classmethod
    def _widths_ok(cls, v: list[int], info: ValidationInfo) -> list[int]:
        """Every list of widths (``widths``, and ``train_widths`` where there is one), against ``init`` (declared first)."""
        return check_widths(v, str(info.field_name), info.data.get("init", "coupled"))

    def network(self, m: int, seed: int, activation: str, scaling: str) -> ExpNet:
        """``ExpNet.init`` of width m with this configuration's d and init (its weights draw from the
        network's own streams, see ``expreg.streams``)."""
        return ExpNet.init(self.d, m, seed=seed, activation=activation, init=self.init, scaling=scaling)


def build_config(
    config_cls: type[ExperimentConfig],
    presets: dict[str, dict[str, Any]],
    preset: str = "quick",
    overrides: dict[str, Any] | None = None,
    source: str = "overrides",
) -> ExperimentConfig:
    """The configuration of ``preset`` with ``overrides`` applied, validated.

    Raises
    ------
    ValueError
        Unknown preset, or a field that fails validation; the message names
        the field, the value found and what is allowed.
    """
    if preset not in presets:
        raise ValueError(
            f"preset {preset!r} is not known for experiment {config_cls.name!r}; choose one of {sorted(presets)}"
        )
    values = {**presets[preset], **(overrides or {})}
    try:
        return config_cls(**values)
    except ValidationError as exc:
        raise ValueError(
            f"invalid configuration for experiment {config_cls.name!r} (from {source}): {explain_validation(exc)}"
        ) from None


def explain_validation(exc: ValidationError, prefix: str = "") -> str:
    """A pydantic ValidationError as one line: each field (``prefix`` + its dotted path), what was wrong and found."""
    parts = []
    for err in exc.errors():
        where = prefix + (".".join(str(p) for p in err["loc"]) or "(top level)")
        found = repr(err.get("input"))
        found = found if len(found) <= 80 else found[:77] + "..."
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown field {where!r} (value {found}); remove it or check its spelling")
        elif err["type"] == "missing":
            parts.append(f"field {where!r} is missing")
        else:
            parts.append(f"field {where!r}: {err['msg']} (found {found})")
    return "; ".join(parts)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file into a dict, with clear errors for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no configuration file at {str(p)!r}")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{str(p)!r} is not valid TOML: {exc}") from None


def load_config(
    config_cls: type[ExperimentConfig], presets: dict[str, dict[str, Any]], path: str | Path, preset: str | None = None
) -> ExperimentConfig:
    """Configuration from a TOML file.

    The file holds field values at its top level. Two optional keys are not
    fields: ``experiment`` (must match the experiment's name) and ``preset``
    (the preset the fields override; default "quick", or ``preset`` when given).

    Example file for the width experiment::

        experiment = "width"
        preset = "quick"
        ns = [8, 16, 32]
        seeds = [0, 1, 2, 3, 4]
    """
    values = read_toml(path)
    named = values.pop("experiment", config_cls.name)
    if named != config_cls.name:
        raise ValueError(
            f"{str(path)!r} configures experiment {named!r}, not {config_cls.name!r}; run `expreg run {named} --config {path}`"
        )
    base = values.pop("preset", None) or preset or "quick"
    return build_config(config_cls, presets, base, values, source=str(path))
