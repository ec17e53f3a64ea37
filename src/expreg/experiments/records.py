"""The two JSON files of an experiment directory, read as untrusted input.

``config.json`` (written by ``runner.run_experiment``) and ``summary.json``
(written by ``analysis.analyse``) may have been edited, cut short or
crafted: each is parsed here into a pydantic model, and anything that does
not fit is one ``CheckpointError`` line naming the file and the field.

- ``config.json``: the experiment must be known, its fields must be a valid
  configuration of it, and they must hash to the recorded ``config_hash``
  (``config.fields_hash``: the hash as computed when the file was written,
  so a file of an older version with fewer fields still matches);
- ``summary.json``: the experiment must be the directory's, figure names
  plain file stems (no path: a name like ``../../secret`` is refused, and
  ``figure_path`` resolves every figure inside the directory or refuses it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..core.errors import CheckpointError
from .base import EXPERIMENTS, get_experiment
from .config import explain_validation, fields_hash

#: What a figure stem may be: a plain file name stem, no separator, not starting with a dot.
FIGURE_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,120}")


class ConfigRecord(BaseModel):
    """``config.json``: the configuration a run recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    experiment: str
    versioned_name: str
    config_hash: str = Field(pattern=r"^[0-9a-f]{12}$")
    config: dict[str, Any]

    @field_validator("experiment")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in EXPERIMENTS:
            raise ValueError(f"experiment {v!r} is not known (known: {', '.join(EXPERIMENTS)})")
        return v


class SummaryRecord(BaseModel):
    """``summary.json``: what the report shows of one experiment (other keys are kept as they are)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    experiment: str
    versioned_name: str
    description: str
    config_hash: str = Field(pattern=r"^[0-9a-f]{12}$")
    config: dict[str, Any]
    runs: int = Field(ge=0)
    cpu_seconds: float = Field(ge=0)
    figures: list[str] = Field(default_factory=list)
    headline: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @field_validator("figures")
    @classmethod
    def _plain_stems(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not FIGURE_STEM.fullmatch(s)]
        if bad:
            raise ValueError(f"figure names must be plain file stems (letters, digits, '_', '.', '-'), got {bad[0]!r}")
        return v


def _load_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{str(path)!r} is not valid JSON ({exc}); it may be cut short or edited: restore it or run the experiment again"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{str(path)!r} must hold a JSON object, found {type(data).__name__}; restore it or run the experiment again"
        )
    return data


def _validated(model: type[BaseModel], path: Path, data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CheckpointError(
            f"{str(path)!r}: {explain_validation(exc)}; restore the file or run the experiment again"
        ) from None


def read_config_record(directory: str | Path) -> tuple[ConfigRecord, Any]:
    """(the record, the experiment's Config) from ``directory/config.json``, checked against its hash.

    Raises
    ------
    FileNotFoundError
        No config.json.
    CheckpointError
        Not JSON, not an object, a missing, unknown or invalid field, or
        fields that do not hash to the recorded ``config_hash``.
    """
    path = Path(directory) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no experiment results in {str(directory)!r} (missing config.json); run `expreg run EXPERIMENT --out ...` first"
        )
    record: ConfigRecord = _validated(ConfigRecord, path, _load_object(path))
    module = get_experiment(record.experiment)
    try:
        cfg = module.Config(**record.config)
    except ValidationError as exc:
        raise CheckpointError(f"{str(path)!r}: {explain_validation(exc, prefix='config.')}") from None
    if record.versioned_name != cfg.versioned_name:
        raise CheckpointError(
            f"{str(path)!r}: field 'versioned_name' is {record.versioned_name!r} but this expreg writes "
            f"{cfg.versioned_name!r}; run the experiment again"
        )
    actual = fields_hash(record.versioned_name, record.config)
    if actual != record.config_hash:
        raise CheckpointError(
            f"{str(path)!r}: its fields hash to {actual}, not to the recorded config_hash {record.config_hash} "
            "(the file was edited); restore it or run the experiment again"
        )
    return record, cfg


def read_summary_record(directory: str | Path) -> dict[str, Any]:
    """``directory/summary.json`` checked (``SummaryRecord``), as a dict; its experiment must be the directory's."""
    directory = Path(directory)
    path = directory / "summary.json"
    record: SummaryRecord = _validated(SummaryRecord, path, _load_object(path))
    if record.experiment != directory.name:
        raise CheckpointError(
            f"{str(path)!r}: field 'experiment' is {record.experiment[:60]!r}, not {directory.name!r}, the directory "
            "it is in; run `expreg report` to write it again"
        )
    return record.model_dump()


def figure_path(directory: str | Path, stem: str, ext: str = "png") -> Path:
    """``directory/figures/STEM.EXT``, refused unless ``stem`` is a plain stem and the path stays inside ``directory``."""
    base = Path(directory).resolve()
    if not FIGURE_STEM.fullmatch(stem):
        raise CheckpointError(f"figure name {stem!r} of {str(base)!r} is not a plain file stem; it is not read")
    path = (base / "figures" / f"{stem}.{ext}").resolve()
    if not path.is_relative_to(base):
        raise CheckpointError(f"figure {stem!r} of {str(base)!r} resolves to {str(path)!r}, outside it; it is not read")
    return path
