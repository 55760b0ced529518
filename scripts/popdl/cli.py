"""The ``popdl`` command line: every workflow step, runnable by hand.

Each step reads its configuration either from a config file
(``--configfile config/config.yaml``: validated, defaults filled in) or from
the JSON slice that the workflow passes (``--settings '{...}'`` or
``--settings @file.json``).  Errors are one line on stderr and exit status 1.

Commands are registered with :func:`command`; a module adds its own by
defining ``add_commands(sub)`` and being listed in :data:`COMMAND_MODULES`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from popdl.config import load_configs
from popdl.errors import ConfigError
from popdl.native_logs import filtered_stderr, wanted
from popdl.stages import load_settings, stage_config

__all__ = ["main", "config_from_args", "COMMAND_MODULES"]

log = logging.getLogger("popdl")

#: Modules contributing sub-commands through ``add_commands(subparsers)``.
COMMAND_MODULES = [
    "popdl.cli_core",
    "popdl.cli_model",
    "popdl.cli_predict",
    "popdl.cli_report",
    "popdl.cli_scan",
    "popdl.cli_fsc",
]


#: --configfile's help: one config file, or several merged as Snakemake merges them.
CONFIGFILE_HELP = ("a popdl config file (YAML); several are merged as Snakemake merges them, the later files' keys "
                   "replacing the earlier's (e.g. the config and --suggest-config's file)")


def add_config_arguments(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """--configfile or --settings; ``several``: --configfile takes several files (for commands
    without positional arguments, which the list would swallow)."""
    group = parser.add_mutually_exclusive_group(required=True)
    if several:
        group.add_argument("--configfile", type=Path, nargs="+", help=CONFIGFILE_HELP)
    else:
        group.add_argument("--configfile", type=Path, help="a popdl config file (YAML)")
    group.add_argument("--settings", help="the step's JSON config slice, as the workflow passes it (or @file)")


def population_mapping(items: list[str]) -> dict[str, str]:
    """``--populations LABEL=POP ...`` as a dict; a word without ``=`` is a :class:`ConfigError`."""
    out = {}
    for item in items:
        label, sep, pop = item.rpartition("=")  # a label may hold '=' ('site=3'); a population's name does not
        if not sep or not label.strip() or not pop.strip():
            raise ConfigError(f"--populations {item!r}: expected LABEL=POPULATION (e.g. nuttalli=pop1)")
        label, pop = label.strip(), pop.strip()
        if out.get(label, pop) != pop:
            raise ConfigError(f"--populations: label {label!r} is mapped twice, to {out[label]!r} and {pop!r}")
        out[label] = pop
    return out


def config_from_args(args, stage: str, scenario: str | None = None) -> dict:
    """The config slice of ``stage`` from --configfile or --settings."""
    if args.configfile is not None:
        files = args.configfile if isinstance(args.configfile, list) else [args.configfile]
        config = load_configs(files)
        if scenario is not None and scenario not in config["scenarios"]:
            raise ConfigError(f"scenario {scenario!r} is not in {' + '.join(map(str, files))} (valid: {', '.join(config['scenarios'])})")
        return stage_config(config, stage, scenario)
    try:
        return load_settings(args.settings)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"--settings is not valid JSON: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="popdl", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    # popdl's own progress at INFO; other libraries' INFO lines (msprime logs one
    # per simulated locus) only with --verbose.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    log.setLevel(level)
    # The report lines on stdout keep their place among the log lines on stderr when both go to one file
    # (a job's log, `2>&1`): a piped stdout is otherwise written in blocks, after the log lines.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)
    try:
        with filtered_stderr(wanted(args.verbose)):
            return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"popdl: config error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"popdl: error: {exc}", file=sys.stderr)
        return 1
