"""Loading and validating popdl configuration files.

The JSON schema in ``workflow/schemas/config.schema.yaml`` is the single
source of truth for keys, descriptions and defaults.  :func:`validate`
checks a configuration against it, fills in defaults, and turns the first
error into one line naming the offending key; :func:`check_semantics` then
asks each subsystem to check its own part of the config, so that a bad prior
fails before any job starts: the scenarios (:func:`popdl.scenarios.check_config`:
priors, constraints, graphs), the SFS projection (:func:`popdl.features.check_config`), the tuning storage
(:func:`popdl.tuning.check_config`) and the simulators' programs
(:func:`popdl.simulators.check_config`).

This module is at the top of the package's dependency order: it imports the
subsystems it asks, and none of them imports it.  What every layer needs
lives below: the errors in :mod:`popdl.errors`, the canonical form and hash of
settings in :mod:`popdl.common`.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from popdl import features, scenarios, simulators, tuning
from popdl.common import ROOT, canonicalize, find_file
from popdl.errors import ConfigError, shown
from popdl.model_io import read_bundle

__all__ = [
    "SCHEMA_PATH",
    "load_config",
    "load_yaml",
    "parse_yaml",
    "check_size",
    "validate",
    "check_semantics",
    "prepare",
    "deep_update",
    "stored_config",
]

SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"


#: Largest YAML file (config, scenario graph) read, in bytes.
MAX_YAML_BYTES = 2 * 1024 * 1024
#: Most values (mappings, lists and scalars, counting every use of a YAML
#: alias) in one config or graph file: far above any real one, far below what a
#: "billion laughs" file of nested aliases expands to.
MAX_VALUES = 200_000
#: Deepest nesting of mappings and lists in a config or graph file.
MAX_DEPTH = 64


class _YamlRefused(yaml.MarkedYAMLError):
    """A YAML feature popdl does not accept (duplicate keys, huge merges)."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys and bounding merge keys.

    Only the standard YAML tags are constructed (no Python objects); any other
    tag is an error.  Aliases are shared, not copied, so a file of nested
    aliases loads quickly; :func:`check_size` then bounds its expanded size.
    """

    def compose_node(self, parent, index):
        # PyYAML composes recursively: refuse deep nesting before Python's stack runs out.
        depth = self.__dict__.get("_depth", 0) + 1
        if depth > MAX_DEPTH:
            raise _YamlRefused(None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
        self._depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth - 1

    def flatten_mapping(self, node):
        # PyYAML's own merge ("<<") handling, with the merged entries counted:
        # nested merges of merges would otherwise grow exponentially.
        merge = []
        index = 0
        while index < len(node.value):
            key_node, value_node = node.value[index]
            if key_node.tag == "tag:yaml.org,2002:merge":
                del node.value[index]
                subnodes = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                submerge = []
                for subnode in subnodes:
                    if not isinstance(subnode, yaml.MappingNode):
                        raise yaml.constructor.ConstructorError(
                            "while constructing a mapping", node.start_mark,
                            f"expected a mapping to merge, but found {subnode.id}", subnode.start_mark)
                    self.flatten_mapping(subnode)
                    submerge.append(subnode.value)
                for value in reversed(submerge):
                    merge.extend(value)
                    if len(merge) > MAX_VALUES:
                        raise _YamlRefused(None, None, f"merge keys (<<) expand to more than {MAX_VALUES} entries",
                                           key_node.start_mark)
            elif key_node.tag == "tag:yaml.org,2002:value":
                key_node.tag = "tag:yaml.org,2002:str"
                index += 1
            else:
                index += 1
        if merge:
            node.value = merge + node.value
            # The merged entries come first; a node's own keys may override them.
            self.__dict__.setdefault("_merged", {})[id(node)] = len(merge)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            own = node.value[self.__dict__.get("_merged", {}).get(id(node), 0):]
            for key_node, _ in own:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                try:
                    duplicate = key in seen
                except TypeError:
                    continue
                if duplicate:
                    raise _YamlRefused(None, None, f"key {shown(key)} appears twice in the same mapping "
                                       "(YAML would silently keep only the last one)", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: Exception, text: str) -> str:
    """A YAML error in one line: where (line) and what."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if problem.startswith("could not determine a constructor for the tag"):
            tag = problem.split("tag", 1)[1].strip()
            return f"{line}: the YAML tag {tag} is not allowed (plain YAML values only)"
        if isinstance(exc, _YamlRefused):
            return f"{line}: {problem}"
        return f"{line} is not valid YAML: {problem}"
    if isinstance(exc, yaml.reader.ReaderError):
        char = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        line = text.count("\n", 0, exc.position) + 1
        return f" line {line}: the control character U+{char:04X} is not allowed"
    return f" is not valid YAML: {(str(exc).splitlines() or [type(exc).__name__])[0]}"


def parse_yaml(text: str | bytes, *, name: str = "YAML text", key: str = "") -> Any:
    """Parse YAML text safely, as every user file is read (see :func:`load_yaml`).

    ``name`` starts each error message (e.g. ``"config file 'my.yaml'"``);
    ``key`` is the config key the document is the value of, if any (see
    :func:`check_size`).  Raises :class:`ConfigError` of one line.
    """
    if isinstance(text, bytes):
        if len(text) > MAX_YAML_BYTES:
            raise ConfigError(f"{name} is larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name} is not UTF-8 text (byte {text[exc.start]:#04x} at offset {exc.start})") from None
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{name} is larger than {MAX_YAML_BYTES // (1024 * 1024)} MiB")
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader: standard tags only
    except yaml.YAMLError as exc:
        raise ConfigError(f"{name}{_yaml_problem(exc, text)}") from None
    except RecursionError:
        raise ConfigError(f"{name}: nested too deeply") from None
    check_size(data, name=name, key=key)
    return data


def load_yaml(path: str | Path, *, name: str | None = None, key: str = "") -> Any:
    """Read a user YAML file (config, scenario graph) safely and within bounds.

    Safe loading (standard tags only), UTF-8, at most :data:`MAX_YAML_BYTES`
    bytes, no duplicate keys, and at most :data:`MAX_VALUES` values and
    :data:`MAX_DEPTH` levels once aliases are expanded (a file of nested
    aliases is refused at once).  Raises :class:`ConfigError` of one line
    starting with ``name`` (default: ``YAML file '<path>'``).
    """
    path = Path(path)
    name = name or f"YAML file {str(path)!r}"
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{name} not found") from None
    except OSError as exc:
        raise ConfigError(f"{name} cannot be read: {exc.strerror or exc}") from None
    return parse_yaml(data, name=name, key=key)


def _dotted(path) -> str:
    """A short dotted key for a path into the config: its leading mapping keys."""
    keys = []
    for part in path:
        if not isinstance(part, str) or len(keys) == 4:
            break
        keys.append(part)
    return ".".join(keys)


def check_size(data: Any, *, name: str = "the config", key: str = "") -> None:
    """Refuse a loaded YAML document that is too big or deep once its aliases
    are expanded, or whose mapping keys are not text.

    Walks at most :data:`MAX_VALUES` values (each use of a shared value
    counts), so a "billion laughs" file is refused in milliseconds, before
    anything traverses it in full.  Messages name the config key where the
    problem is (``key`` is the key of ``data`` itself, e.g. a graph file's
    ``scenarios.NAME.graph``), else ``name``.
    """

    def where(path, *, full=False) -> str:
        dotted = ".".join(filter(None, (key, ".".join(map(str, path)) if full else _dotted(path))))
        return f"config key '{dotted}'" if dotted else name

    stack = [(data, ())]
    count = 0
    while stack:
        value, path = stack.pop()
        count += 1
        if count > MAX_VALUES or len(path) > MAX_DEPTH:
            if count > MAX_VALUES:
                raise ConfigError(f"{where(path)}: more than {MAX_VALUES} values once YAML aliases are expanded "
                                  "(nested anchors and aliases?)")
            raise ConfigError(f"{where(path)}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for k, item in value.items():
                if not isinstance(k, str):
                    hint = "quote it in the YAML file"
                    if isinstance(k, bool):
                        hint += ": unquoted yes, no, on, off, true and false are booleans"
                    elif isinstance(k, int):
                        hint += f", as '{k}'"
                    raise ConfigError(f"{where(path, full=True)}: key {shown(k)} is not text ({hint})")
                stack.append((item, path + (k,)))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, path + (i,)) for i, item in enumerate(value))


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


def _ecma(pattern: str) -> re.Pattern:
    """``pattern`` compiled with ECMA-262's meaning of ``$`` (the end of the
    text, as JSON schema specifies), not Python's (which also matches before a
    final newline, so that ``^[a-z]+$`` would accept ``"demo\\n"``)."""
    out, escaped, in_class = [], False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return re.compile("".join(out))


_PATTERNS: dict[str, re.Pattern] = {}


def _pattern(validator, pattern, instance, schema):
    if validator.is_type(instance, "string"):
        compiled = _PATTERNS.get(pattern) or _PATTERNS.setdefault(pattern, _ecma(pattern))
        if not compiled.search(instance):
            yield jsonschema.ValidationError(f"{shown(instance)} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(_fill_defaults(jsonschema.Draft202012Validator), {"pattern": _pattern})

#: Name patterns of the schema, in words.
_NAME_RULES = {
    "^[A-Za-z0-9][A-Za-z0-9_.-]*$": "start with a letter or digit and use only letters, digits, '_', '.' and '-'",
    "^[A-Za-z][A-Za-z0-9_]*$": "start with a letter and use only letters, digits and '_'",
    "^[A-Za-z_][A-Za-z0-9_]*$": "start with a letter or '_' and use only letters, digits and '_'",
}


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _one_line(error: jsonschema.ValidationError) -> str:
    where = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed), key=str) if isinstance(error.instance, dict) else []
        if extra and allowed:
            bad = str(extra[0])
            guess = difflib.get_close_matches(bad, allowed, n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            prefix = f"{where}." if error.absolute_path else ""
            return f"unknown config key {prefix + bad!r}{hint} (valid keys: {', '.join(allowed)})"
    if error.validator == "required":
        return f"config key '{where}': {error.message}"
    if error.validator == "enum":
        return f"config key '{where}': {shown(error.instance)} is not one of {error.validator_value}"
    if error.validator == "type":
        types = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        return f"config key '{where}': {shown(error.instance)} is not of type {', '.join(map(repr, types))}"
    if error.validator == "pattern":
        rule = _NAME_RULES.get(error.validator_value)
        if "propertyNames" in error.schema_path:
            rule = f"names {rule}" if rule else f"names must match {error.validator_value}"
            return f"config key '{where}': name {shown(error.instance)} is not allowed ({rule})"
        if rule:
            return f"config key '{where}': {shown(error.instance)} is not a valid name (names {rule}; they become file names)"
    return f"config key '{where}': {error.message}"


def _check_numbers(value, path=()) -> None:
    """Refuse NaN and infinite numbers (YAML .nan, .inf) outside scenario graphs,
    where a number such as ``genome.length: .nan`` would pass the schema's bounds."""
    if path[:1] == ("scenarios",) and path[2:3] == ("graph",):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{_key(path)}': {value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_numbers(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_numbers(item, path + (i,))


def _check_unique_names(config: dict) -> None:
    """Data sets and scans name output folders: two with one name would share them."""
    for section in ("predict", "scan"):
        seen = set()
        for i, entry in enumerate(config[section]["data"]):
            if entry["name"] in seen:
                raise ConfigError(f"config key '{section}.data.{i}.name': {entry['name']!r} names two entries of {section}.data")
            seen.add(entry["name"])
            for label, pop in (entry.get("populations") or {}).items():
                if pop not in config["samples"]:
                    raise ConfigError(f"config key '{section}.data.{i}.populations.{label}': {pop!r} is not a simulated "
                                      f"population (config samples: {', '.join(config['samples'])})")


def validate(config: dict) -> dict:
    """Validate ``config`` in place against the schema and fill in defaults.

    Schema patterns are matched with JSON schema's (ECMA-262) meaning of ``$``,
    so a name with a final newline is refused.  Raises :class:`ConfigError`
    with one line naming the first bad key.
    """
    if not isinstance(config, dict):
        raise ConfigError("the config file must contain a mapping of keys to values")
    check_size(config)
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        raise ConfigError(_one_line(jsonschema.exceptions.best_match(errors) or errors[0]))
    _check_numbers(config)
    _check_unique_names(config)
    return config


def resolve_graphs(config: dict, *, base_dirs: tuple[Path, ...] = ()) -> dict:
    """Replace graph file paths by the parsed YAML mapping they contain.

    Paths are looked up relative to the working directory first, then to
    each of ``base_dirs`` (typically the config file's folder).
    """
    for name, scenario in config["scenarios"].items():
        graph = scenario["graph"]
        if isinstance(graph, str):
            found = find_file(graph, base_dirs)
            if found is None:
                raise ConfigError(f"config key 'scenarios.{name}.graph': file {graph!r} not found")
            scenario["graph"] = load_yaml(found, name=f"config key 'scenarios.{name}.graph': file {graph!r}",
                                          key=f"scenarios.{name}.graph")
            if not isinstance(scenario["graph"], dict):
                raise ConfigError(f"config key 'scenarios.{name}.graph': {graph!r} does not hold a demes graph mapping")
    return config


def check_semantics(config: dict, *, check_executables: bool = True) -> dict:
    """Ask each subsystem to check its part of a validated config: the split
    fractions, then every scenario (priors, derived expressions, constraints
    and graph), the tuning storage, and (unless ``check_executables`` is false,
    as when every rule brings its own conda environment) the simulators'
    programs.  Raises :class:`ConfigError` (one line) at the first problem."""
    split = config["simulations"]["split"]
    total = split["train"] + split["validation"] + split["test"]
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(f"config key 'simulations.split': fractions sum to {total:g}, not 1")
    scenarios.check_config(config)
    features.check_config(config)
    tuning.check_config(config)
    if check_executables:
        simulators.check_config(config)
    return config


def load_configs(paths: str | Path | list) -> dict:
    """:func:`load_config` of one config file, or of several merged as Snakemake merges them
    (``--configfile A B``): each later file's keys replace the earlier's, mappings merged key by key."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    first, *later = paths
    overrides: dict = {}
    for path in later:
        loaded = load_yaml(Path(path), name=f"config file {str(path)!r}")
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(path)!r} holds no mapping of config keys to values")
        overrides = deep_update(overrides, loaded or {})
    return load_config(first, overrides=overrides or None)


def load_config(path: str | Path, *, overrides: dict | None = None) -> dict:
    """Read, validate and check a config file; return it with defaults filled in.

    The file is read with :func:`load_yaml` (safe, bounded, no duplicate keys).
    """
    path = Path(path)
    name = f"config file {str(path)!r}"
    config = load_yaml(path, name=name)
    if config is None and not overrides:
        raise ConfigError(f"{name} is empty")
    if config is not None and not isinstance(config, dict):
        kind = "a list" if isinstance(config, list) else f"a single value ({shown(config)})"
        raise ConfigError(f"{name} holds {kind}, not a mapping of config keys to values")
    if overrides:
        config = deep_update(config or {}, overrides)
    # Graph paths: from the working folder, beside the config file, else in the repository, as
    # the workflow reads them (popdl check-data --configfile ~/popdl/config/config.yaml from a data folder).
    from popdl.paths import repository

    repo = repository()
    return prepare(config, base_dirs=(path.parent, *([repo] if repo else [])))


def prepare(config: dict, *, base_dirs: tuple[Path, ...] = (), check_executables: bool = True) -> dict:
    """Validate, fill defaults, load graph files and check scenarios.

    The config is then put in canonical form, in place (:func:`canonicalize`):
    the order of mapping keys and the spelling of numbers in the file carry no
    meaning, so a re-formatted config file reruns nothing.
    """
    validate(config)
    resolve_graphs(config, base_dirs=base_dirs)
    canonical = canonicalize(config)
    config.clear()
    config.update(canonical)
    check_semantics(config, check_executables=check_executables)
    return config


def deep_update(base: dict, new: dict) -> dict:
    """A copy of ``base`` with ``new`` merged in, mapping by mapping (``new`` wins)."""
    out = copy.deepcopy(base)
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def stored_config(folder: str | Path) -> dict:
    """The run config a model folder was trained with (``bundle.json``), prepared
    again (:func:`prepare`: validated, defaults filled, canonical form).

    Raises :class:`ConfigError` when the bundle holds none or it is not valid.
    """
    folder = Path(folder)
    bundle = read_bundle(folder)
    if not isinstance(bundle.get("config"), dict):
        raise ConfigError(f"{folder}/bundle.json holds no run config; give --configfile (the config the model was trained with)")
    try:
        return prepare(copy.deepcopy(bundle["config"]), check_executables=False)
    except ConfigError as exc:
        raise ConfigError(f"{folder}/bundle.json, its stored run config: {exc}") from None

