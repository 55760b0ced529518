"""Every config key is documented with a description and a default; docs/config.md is generated from them."""

from __future__ import annotations

from popdl.config import load_schema, validate
from popdl.schema_doc import keys, render


def test_every_key_has_a_description_and_a_default():
    schema = load_schema()
    for key, node, required in keys(schema):
        assert node.get("description"), f"{key} has no description"
        # Required keys and the fields of list entries (user data such as one
        # data set to predict) have no default; every other key has one.
        if not required and "[]" not in key:
            assert "default" in node, f"{key} has no default"


def test_defaults_fill_in_every_section():
    config = validate({"samples": {"pop": 2}, "scenarios": {"s": {"graph": {}, "priors": {}}}})
    assert config["simulations"]["split"] == {"train": 0.8, "validation": 0.1, "test": 0.1}
    assert config["features"]["snps"] > 0 and config["genome"]["loci"] == 1


def test_generated_page_lists_every_key():
    schema = load_schema()
    text = render(schema)
    for key, _, _ in keys(schema):
        assert f"| `{key}` |" in text
