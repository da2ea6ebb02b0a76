"""Tests of the parameter table (taaf_ros.params) against config/ and docs/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from taaf_ros import params
from taaf_ros.params import PERCEPTION_PARAMS, REPLAY_PARAMS, TABLES

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("table", [PERCEPTION_PARAMS, REPLAY_PARAMS])
def test_defaults_are_valid_and_unique(table):
    names = [s.name for s in table]
    assert len(names) == len(set(names))
    assert params.validate(table, params.defaults(table)) == []
    for s in table:
        assert s.description and s.check(s.default) is None


@pytest.mark.parametrize("name, value, reason", [
    ("hop_s", 0.0, ">= 0.005"),
    ("hop_s", "0.05", "hop_s must be a float (e.g. hop_s:=0.05), got str"),
    ("top_k", True, "top_k must be an integer (e.g. top_k:=3), got bool True"),
    ("device", "tpu", "must be one of"),
    ("events_type", "evt3", "must be one of"),
    ("audio_sample_rate", 10, ">= 1000"),
    ("nonsense", 1, "unknown parameter"),
])
def test_bad_values_are_refused_with_reason(name, value, reason):
    errors = params.validate(PERCEPTION_PARAMS, {name: value})
    assert len(errors) == 1 and reason in errors[0], errors


def test_cross_rules_and_accepted_forms():
    assert params.validate(PERCEPTION_PARAMS, {"device": "cuda:1"}) == []
    assert params.validate(PERCEPTION_PARAMS, {"window_s": 1}) == []  # int for a float is ok
    assert "must not exceed" in params.validate(
        PERCEPTION_PARAMS, {"window_s": 0.2, "hop_s": 0.5})[0]
    # window_s 0 means "from the model card": no cross check then.
    assert params.validate(PERCEPTION_PARAMS, {"window_s": 0.0, "hop_s": 0.5}) == []


def test_config_yaml_is_generated_from_the_table():
    path = REPO_ROOT / "config" / "perception.yaml"
    assert path.read_text() == params.render_yaml()
    doc = yaml.safe_load(path.read_text())
    for node, table in TABLES.items():
        assert doc[f"/**/{node}"]["ros__parameters"] == params.defaults(table)


def _doc_rows(text: str, heading: str) -> dict[str, tuple[str, str]]:
    """Rows `| name | default | description |` of the table under ``heading``."""
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([a-z_]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3))
    return rows


@pytest.mark.parametrize("node", list(TABLES))
def test_docs_parameter_table_matches_params(node):
    text = (REPO_ROOT / "docs" / "ros.md").read_text()
    rows = _doc_rows(text, f"### Parameters of `{node}`")
    table = TABLES[node]
    assert set(rows) == {s.name for s in table}
    for s in table:
        default, desc = rows[s.name]
        assert default == f"`{json.dumps(s.default)}`", s.name
        assert desc == params.describe(s), s.name
