"""The config schema, checked from outside: the JSON Schema shipped for editors is the
code's, an independent validator (jsonschema) accepts every built-in config and refuses what
camtrace refuses, and the generated reference in docs/ is current."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from camtrace.data.simcam.preset import available_presets, load_preset, preset_path
from camtrace.errors import CamtraceError
from camtrace.schema import load_yaml
from camtrace.workflows.config import (
    builtin_configs,
    config_schema,
    parse_config,
    preset_schema,
)
from camtrace.workflows.tables import refresh_tables

ROOT = Path(__file__).resolve().parents[1]
VALIDATOR = jsonschema.Draft202012Validator(config_schema())


def _builtin(name: str) -> object:
    return load_yaml((resources.files("camtrace.configs") / f"{name}.yaml").read_text(), name)


def test_the_shipped_json_schema_is_the_codes() -> None:
    shipped = json.loads((ROOT / "docs" / "config.schema.json").read_text())
    assert shipped == json.loads(json.dumps(config_schema())), (
        "docs/config.schema.json is stale: camtrace schema --out docs/config.schema.json"
    )


def test_the_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(config_schema())


@pytest.mark.parametrize("name", builtin_configs())
def test_jsonschema_accepts_every_builtin_config(name: str) -> None:
    VALIDATOR.validate(_builtin(name))


@pytest.mark.parametrize(
    "raw",
    [
        {"seed": -1},
        {"detektor": {}},
        {"train": {"epochs": 2.5}},
        {"train": {"channels_last": "yes"}},
        {"data": {"source": "ftp"}},
        {"evaluate": {"voting_ks": [1, 0]}},
        {"attacks": {"jpeg": [None, 101]}},
        {"attacks": {"runs": [{"eps": 4}]}},
        {"detectors": [{"arch": "resnet"}]},
        {"robustness": {"attacks": ["fgsm", "nope"]}},
    ],
)
def test_what_camtrace_refuses_jsonschema_refuses(raw: dict) -> None:
    with pytest.raises(CamtraceError):
        parse_config(raw)
    assert not VALIDATOR.is_valid(raw)


def test_the_docs_config_reference_is_current() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    assert refresh_tables(text, ROOT) == text, "docs/config.md: camtrace tables docs/config.md"


def test_the_shipped_preset_schema_is_the_codes() -> None:
    shipped = json.loads((ROOT / "docs" / "preset.schema.json").read_text())
    assert shipped == json.loads(json.dumps(preset_schema())), (
        "docs/preset.schema.json is stale: camtrace schema --preset --out docs/preset.schema.json"
    )


@pytest.mark.parametrize("preset", available_presets())
def test_jsonschema_accepts_every_shipped_preset_that_stands_alone(preset: str) -> None:
    raw = load_yaml(preset_path(preset).read_text(), preset)
    if "extends" in raw:
        pytest.skip("extends another preset: the schema applies once it is resolved")
    jsonschema.Draft202012Validator(preset_schema()).validate(raw)
    load_preset(preset)  # and camtrace reads it
