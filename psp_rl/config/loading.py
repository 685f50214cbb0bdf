"""Reading a run config: a YAML file or a shipped config's name, ``--set KEY=VALUE`` settings over
it, and validation into a :class:`~psp_rl.config.schema.RunConfig` with one-line errors naming the key."""

from __future__ import annotations

import argparse
import copy
import difflib
import importlib.resources
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from psp_rl.config.agent import AgentConfig
from psp_rl.config.compat import FLAT_OPTIONS, nest_agent_options
from psp_rl.config.schema import RunConfig, SequenceConfig
from psp_rl.continual.settings import format_validation_error
from psp_rl.errors import ConfigError


def _section(model: type[BaseModel] | None, key: Any) -> type[BaseModel] | None:
    """The settings model of ``model``'s field ``key`` where that field is a section (or an
    optional one: ``agent.dqn``), else None."""
    field = model.model_fields.get(str(key)) if model is not None else None
    annotation = field.annotation if field is not None else None
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _did_you_mean(loc: tuple[Any, ...]) -> str:
    """``"; did you mean 'learning_rate'?"`` for a misspelled key of a known section."""
    model: type[BaseModel] | None = RunConfig
    for part in loc[:-1]:
        model = _section(model, part)
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_config(data: Any, source: str = "config") -> RunConfig:
    """Validate a mapping into a :class:`RunConfig`; raise :class:`ConfigError` naming the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {format_validation_error(exc, hint=_did_you_mean)}") from None


def read_config(path: str | Path, settings: Sequence[str] = ()) -> Any:
    """A YAML config file as data (``yaml.safe_load``) with ``key.path=value`` ``settings`` applied
    (:func:`apply_settings`), not yet validated."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r}: not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r}: not valid YAML ({exc})") from None
    return apply_settings(data, settings) if isinstance(data, dict) and settings else data


def shipped_configs() -> dict[str, Path]:
    """The configs installed with the package (``experiments/configs/`` in a checkout), by name."""
    root = importlib.resources.files("psp_rl.configs")
    return {Path(e.name).stem: Path(str(e)) for e in root.iterdir() if e.name.endswith(".yaml")}


def find_config(name: str | Path) -> Path:
    """A config file: ``name`` itself where it is a file, else the shipped config of that name
    (``quickstart`` or ``quickstart.yaml``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name.removesuffix(".yaml")
    if path.parent == Path(".") and stem in shipped:
        return shipped[stem]
    close = difflib.get_close_matches(stem, list(shipped), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(
        f"config {str(name)!r}: neither a file nor a shipped config; {hint}shipped: {', '.join(sorted(shipped))}"
    )


def load_config(path: str | Path, overrides: dict[str, Any] | None = None, settings: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config with its ``key.path=value`` ``settings`` (:func:`read_config`), apply
    top-level ``overrides`` and validate it."""
    data = read_config(path, settings)
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    return parse_config(data, source=f"{path} with --set {' '.join(settings)}" if settings else str(path))


def add_set_option(parser: argparse.ArgumentParser, example: str) -> None:
    """A script's ``--set KEY=VALUE ...`` (into ``args.settings``, for :func:`read_config`), as ``psp-rl
    train --set`` takes them; ``example`` shows one the script is used with."""
    parser.add_argument(
        "--set",
        dest="settings",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"settings over the config's, as psp-rl train --set takes them ({example})",
    )


def apply_settings(data: dict[str, Any], settings: Sequence[str]) -> dict[str, Any]:
    """``data`` (a config mapping) with each ``KEY=VALUE`` of ``settings`` set, as ``--set`` gives
    them: ``agent.learning_rate=1e-3`` sets ``data["agent"]["learning_rate"]``. A value is read as
    a YAML scalar (``50000`` an int, ``true`` a bool, ``[64, 64]`` a list), so the config's own
    validation types it as it types the file; a key must name a setting of the schema. An earlier
    release's flat agent key (``agent.center``) sets its section's (``agent.network.center``)."""
    out = copy.deepcopy(data)
    if isinstance(out.get("agent"), dict):
        try:
            out["agent"] = nest_agent_options(out["agent"])
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. agent.learning_rate=1e-3")
        parts = key.split(".")
        _check_setting_key(item, parts)
        if parts[0] == "agent" and len(parts) == 2 and parts[1] in FLAT_OPTIONS:
            parts = ["agent", *FLAT_OPTIONS[parts[1]]]
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value {text!r} is not a YAML scalar") from None
        section = out
        for part in parts[:-1]:
            if not isinstance(section.get(part), dict):
                section[part] = {}
            section = section[part]
        section[parts[-1]] = value
    return out


def _check_setting_key(item: str, parts: list[str]) -> None:
    """Raise naming the first part of a ``--set`` key that is not a setting of :class:`RunConfig`."""
    model: type[BaseModel] | None = RunConfig
    for depth, part in enumerate(parts):
        if model is None or model is SequenceConfig and part == "spec":
            return  # a free-form mapping (a custom sequence): its own validation names bad keys
        if model is AgentConfig and part in FLAT_OPTIONS and depth == len(parts) - 1:
            return  # an earlier release's flat name (agent.center): the schema nests it
        if part not in model.model_fields:
            close = difflib.get_close_matches(part, list(model.model_fields), n=1)
            hint = f"; did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
            raise ConfigError(f"--set {item!r}: unknown key {'.'.join(parts[: depth + 1])!r}{hint}")
        section = _section(model, part)
        if section is None and depth < len(parts) - 1:
            raise ConfigError(f"--set {item!r}: {'.'.join(parts[: depth + 1])!r} is a setting, not a section")
        model = section
