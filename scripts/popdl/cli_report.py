"""Sub-command writing the HTML report."""

from __future__ import annotations

import logging
from pathlib import Path

from popdl.cli import add_config_arguments, config_from_args

log = logging.getLogger("popdl")


def add_commands(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report of a run")
    add_config_arguments(p)
    p.add_argument("--results", required=True, help="the run's results folder (results/{run})")
    p.add_argument("--out", required=True, help="report.html to write")
    p.add_argument("--comparison", help="also write the network-vs-ABC table here (TSV)")
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from popdl.report import write_report
    from popdl.stages import settings_hash

    config = config_from_args(args, "report")
    summary = write_report(config, Path(args.results), Path(args.out), comparison_out=args.comparison,
                           config_hash=settings_hash(config))
    log.info("report: %s", summary)
    return 0
