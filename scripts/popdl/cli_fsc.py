"""Sub-command ``import-fsc``: a fastsimcoal2 .tpl/.est pair as a popdl scenario."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

log = logging.getLogger("popdl")


def add_commands(sub) -> None:
    p = sub.add_parser("import-fsc", help="turn a fastsimcoal2 .tpl/.est pair into a scenario graph and priors")
    p.add_argument("--tpl", required=True, type=Path, help="fastsimcoal2 template (.tpl)")
    p.add_argument("--est", required=True, type=Path, help="fastsimcoal2 priors and rules (.est)")
    p.add_argument("--out", required=True, type=Path, help="demes graph with placeholders to write (YAML)")
    p.add_argument("--name", help="scenario name (default: the --out file's stem)")
    p.add_argument("--names", help="comma-separated deme names in template order (default pop0, pop1, ...)")
    p.add_argument("--config-out", type=Path, help="also write the scenario's config entry (priors, constraints) here")
    p.set_defaults(func=cmd_import_fsc)


def cmd_import_fsc(args) -> int:
    from popdl.fsc_import import import_fsc
    from popdl.io import atomic_path

    for path in (args.tpl, args.est):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found")
    name = args.name or args.out.stem
    result = import_fsc(
        args.tpl.read_text(),
        args.est.read_text(),
        names=args.names.split(",") if args.names else None,
        description=f"Imported from {args.tpl.name} and {args.est.name}",
    )
    header = f"# Scenario graph imported from the fastsimcoal2 template {args.tpl.name} (sizes in diploid individuals).\n"
    with atomic_path(args.out, suffix=".yaml") as tmp:
        tmp.write_text(header + yaml.safe_dump(result["graph"], sort_keys=False))
    entry = {"scenarios": {name: {"graph": str(args.out), "priors": result["priors"], "constraints": result["constraints"]}},
             "samples": result["samples"]}
    text = yaml.safe_dump(entry, sort_keys=False)
    if args.config_out:
        with atomic_path(args.config_out, suffix=".yaml") as tmp:
            tmp.write_text(text)
    print(f"# {args.out} written; config entry for scenario {name!r} (template sample sizes as diploid individuals):")
    print(text, end="")
    return 0
