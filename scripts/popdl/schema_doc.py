"""Write ``docs/config.md`` from the descriptions and defaults of the config schema.

    python -m popdl.schema_doc            # rewrites docs/config.md
    python -m popdl.schema_doc --check    # exit 1 when docs/config.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from popdl.common import ROOT
from popdl.config import load_schema

__all__ = ["render", "keys", "DOC_PATH"]

DOC_PATH = ROOT / "docs" / "config.md"

HEADER = """# Configuration reference

Generated from `workflow/schemas/config.schema.yaml` by `python -m popdl.schema_doc`;
edit the schema, not this file. Every key has a default unless marked *required*;
unknown keys are rejected with the list of valid ones (and a suggestion for a typo).
A config file is checked without running anything by `popdl check --configfile FILE`
or `snakemake -n --configfile FILE`. Worked examples: `config/config.yaml` and
`config/examples/*.yaml`.
"""


def _type(node: dict) -> str:
    kind = node.get("type", "")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if "enum" in node and node["enum"]:
        kind = " | ".join(json.dumps(v) for v in node["enum"])
    if kind == "array" and isinstance(node.get("items"), dict):
        inner = node["items"]
        kind = f"list of {_type(inner) or 'objects'}"
    return kind


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def keys(node: dict, path: str = "", required: tuple = ()) -> list[tuple[str, dict, bool]]:
    """(dotted key, schema node, required) of every key under ``node``, depth first.

    ``*`` stands for a name the user chooses (a scenario, a population) and
    ``[]`` for the entries of a list.
    """
    out = []
    for name, sub in node.get("properties", {}).items():
        key = f"{path}.{name}" if path else name
        out.append((key, sub, name in node.get("required", [])))
        out += keys(sub, key)
        for branch in sub.get("anyOf", []):  # e.g. a section that is null or a mapping
            if isinstance(branch, dict) and "properties" in branch:
                out += keys(branch, key)
        items = sub.get("items")
        if isinstance(items, dict) and "properties" in items:
            out += keys(items, f"{key}[]")
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" in extra:
        out += keys(extra, f"{path}.*")
    return out


def render(schema: dict) -> str:
    """The Markdown page: one section per top-level key, a table of its keys."""
    lines = [HEADER]
    for name, node in schema["properties"].items():
        lines += [f"## `{name}`", "", _cell(node.get("description", "")), ""]
        rows = [(name, node, name in schema.get("required", []))] + keys(node, name)
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for key, sub, required in rows:
            default = "*required*" if required else (f"`{json.dumps(sub['default'])}`" if "default" in sub else "")
            lines.append(f"| `{key}` | {_cell(_type(sub))} | {_cell(default)} | {_cell(sub.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the page is up to date")
    parser.add_argument("--out", type=Path, default=DOC_PATH)
    args = parser.parse_args(argv)
    text = render(load_schema())
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            print(f"{args.out} is out of date: run python -m popdl.schema_doc", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
