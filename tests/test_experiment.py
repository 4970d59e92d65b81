"""Experiment configs: built-ins load, and each detector gets its native patch protocol."""

from __future__ import annotations

import pytest

from camtrace.errors import CamtraceError
from camtrace.workflows.experiment import builtin_configs, detector_specs, load_config


def test_builtin_configs_load() -> None:
    assert {"quickstart", "bondi2017", "zoo"} <= set(builtin_configs())
    for name in builtin_configs():
        assert load_config(name)["name"] == name


def test_zoo_detectors_use_their_native_patches() -> None:
    specs = {s["arch"]: s["patches"]["protocol"] for s in detector_specs(load_config("zoo"))}
    assert specs == {
        "bondi2017": "bondi",
        "densenet40": "guera",
        "mislnet": "gan",
        "tuama2016": "gan",
        "xception": "gan",
        "inceptionv3": "gan",
    }
    assert detector_specs({}) == [{"arch": "bondi2017", "patches": {"protocol": "bondi"}}]


def test_bad_configs_are_refused_in_one_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndetektor: {arch: bondi2017}\n")
    with pytest.raises(CamtraceError, match="unknown section"):
        load_config(bad)
    with pytest.raises(CamtraceError, match="no such config"):
        load_config("no-such-config")
    bad.write_text("name: [unclosed\n")
    with pytest.raises(CamtraceError, match="invalid YAML"):
        load_config(bad)
