"""Loading and validating popdl configuration files.

The JSON schema in ``workflow/schemas/config.schema.yaml`` is the single
source of truth for keys, descriptions and defaults.  :func:`validate`
checks a configuration against it, fills in defaults, and turns the first
error into one line naming the offending key; :func:`check_semantics` then
parses every scenario (priors, constraints, graph) so that a bad prior fails
before any job starts.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = [
    "ConfigError",
    "SCHEMA_PATH",
    "load_config",
    "validate",
    "check_semantics",
    "config_hash",
]

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration problem, described in one line."""


def load_schema() -> dict:
    with open(SCHEMA_PATH) as fh:
        return yaml.safe_load(fh)


def _fill_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _fill_defaults(jsonschema.Draft202012Validator)


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _one_line(error: jsonschema.ValidationError) -> str:
    where = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        if extra and allowed:
            bad = extra[0]
            guess = difflib.get_close_matches(bad, allowed, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            prefix = f"{where}." if error.absolute_path else ""
            return f"unknown config key '{prefix}{bad}'{hint} (valid keys: {', '.join(allowed)})"
    if error.validator == "required":
        return f"config key '{where}': {error.message}"
    if error.validator == "enum":
        return f"config key '{where}': {error.instance!r} is not one of {error.validator_value}"
    if error.validator == "propertyNames":
        return f"config key '{where}': name {error.instance!r} must start with a letter and use only letters, digits and _"
    return f"config key '{where}': {error.message}"


def validate(config: dict) -> dict:
    """Validate ``config`` in place against the schema and fill in defaults.

    Raises :class:`ConfigError` with one line naming the first bad key.
    """
    if not isinstance(config, dict):
        raise ConfigError("the config file must contain a mapping of keys to values")
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_one_line(jsonschema.exceptions.best_match(errors) or errors[0]))
    return config


def resolve_graphs(config: dict, *, base_dirs: tuple[Path, ...] = ()) -> dict:
    """Replace graph file paths by the parsed YAML mapping they contain.

    Paths are looked up relative to the working directory first, then to
    each of ``base_dirs`` (typically the config file's folder).
    """
    for name, scenario in config["scenarios"].items():
        graph = scenario["graph"]
        if isinstance(graph, str):
            candidates = [Path(graph)] + [Path(d) / graph for d in base_dirs]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise ConfigError(f"config key 'scenarios.{name}.graph': file {graph!r} not found")
            try:
                with open(found) as fh:
                    scenario["graph"] = yaml.safe_load(fh)
            except yaml.YAMLError as exc:
                raise ConfigError(f"config key 'scenarios.{name}.graph': {graph} is not valid YAML ({exc.problem})") from None
            if not isinstance(scenario["graph"], dict):
                raise ConfigError(f"config key 'scenarios.{name}.graph': {graph} does not hold a demes graph mapping")
    return config


def check_semantics(config: dict, *, check_executables: bool = True) -> dict:
    """Parse every scenario: priors, derived expressions, constraints and graph;
    then (unless ``check_executables`` is false, as when every rule brings its
    own conda environment) check that the simulators' programs exist."""
    from popdl.scenarios import Scenario  # local import: scenarios imports this module

    split = config["simulations"]["split"]
    total = split["train"] + split["validation"] + split["test"]
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(f"config key 'simulations.split': fractions sum to {total:g}, not 1")
    for name in config["scenarios"]:
        Scenario.from_config(name, config)
    if "tuning" in config:
        from popdl.tuning import check_storage

        check_storage(config["tuning"]["storage"])
    if check_executables:
        check_simulators(config)
    return config


def check_simulators(config: dict) -> None:
    """Stop with one line when a simulator the scenarios use cannot run here
    (e.g. no fastsimcoal2 executable)."""
    used = {spec.get("simulator") or config["simulator"] for spec in config["scenarios"].values()}
    if "fastsimcoal2" in used:
        from popdl.simulators.fastsimcoal2 import find_executable

        find_executable((config.get("fastsimcoal2") or {}).get("executable"))


def load_config(path: str | Path, *, overrides: dict | None = None) -> dict:
    """Read, validate and check a config file; return it with defaults filled in."""
    path = Path(path)
    try:
        with open(path) as fh:
            config = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} not found") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if overrides:
        config = deep_update(config or {}, overrides)
    return prepare(config, base_dirs=(path.parent,))


def prepare(config: dict, *, base_dirs: tuple[Path, ...] = (), check_executables: bool = True) -> dict:
    """Validate, fill defaults, load graph files and check scenarios."""
    validate(config)
    resolve_graphs(config, base_dirs=base_dirs)
    check_semantics(config, check_executables=check_executables)
    return config


def deep_update(base: dict, new: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """A short, stable hash of (part of) a configuration, for provenance."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:16]
