"""Model specs: each architecture declares its data needs once, and everything reads them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from camtrace.cli import app
from camtrace.data.patches import PROTOCOLS
from camtrace.errors import CamtraceError
from camtrace.models import architectures, build, model_spec
from camtrace.models.inference import patch_protocol
from camtrace.models.spec import ModelSpec
from camtrace.workflows.config import parse_config
from camtrace.workflows.identification import detector_specs
from test_zoo import PAPER_COUNTS, PARAMS

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "camtrace"
CLASSES = [f"Maker_M{i}" for i in range(10)]


def test_every_spec_names_its_class_and_a_real_protocol() -> None:
    assert architectures() == [
        "bondi2017",
        "densenet40",
        "inceptionv3",
        "marra2017",
        "mislnet",
        "spec",
        "spoofnet",
        "tuama2016",
        "xception",
        "yang2018",
    ]
    for arch in architectures():
        spec = model_spec(arch)
        assert spec.name == arch and spec.protocol in PROTOCOLS
    assert [a for a in architectures() if model_spec(a).svm] == ["bondi2017", "marra2017"]
    assert [a for a in architectures() if model_spec(a).handcrafted] == ["marra2017"]


@pytest.mark.parametrize("arch", ["bondi2017", "densenet40", "mislnet", "tuama2016"])
def test_min_patch_size_is_the_smallest_the_network_runs_on(arch: str) -> None:
    smallest = model_spec(arch).min_patch_size
    det = build(arch, CLASSES, smallest).eval()
    with torch.no_grad():
        assert det(torch.zeros(1, 3, smallest, smallest)).shape == (1, 10)
    with pytest.raises(CamtraceError, match=f"too small for {arch}.*>= {smallest}"):
        build(arch, CLASSES, smallest - 1)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(CamtraceError, match="protocol 'vision'"):
        ModelSpec("x", "paper", 64, 8, "vision")
    with pytest.raises(CamtraceError, match="min_patch_size 128"):
        ModelSpec("x", "paper", 64, 128, "bondi")


def test_protocol_and_svm_defaults_come_from_the_spec() -> None:
    det = build("densenet40", CLASSES)
    assert patch_protocol(det).name == "guera" and patch_protocol(det).size == 32
    config = parse_config({"detectors": ["bondi2017", "tuama2016", {"arch": "mislnet"}]})
    assert [(s.protocol.name, s.protocol.size) for s in detector_specs(config)] == [
        ("bondi", 64),
        ("gan", 256),
        ("gan", 256),
    ]
    # a patches section without a protocol keeps the architecture's protocol
    sized = parse_config({"detector": {"arch": "densenet40", "patches": {"size": 64}}})
    assert [(s.protocol.name, s.protocol.size) for s in detector_specs(sized)] == [("guera", 64)]


@pytest.fixture(scope="module")
def table_rows() -> dict[str, str]:
    """``camtrace models`` output, one line per architecture (building them all takes s);
    its first table (the pretrained detectors follow in a second one)."""
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    first = result.output.split("Pretrained on SimCam-Bench")[0]
    rows = (line.split() for line in first.splitlines())
    return {r[0]: " ".join(r) for r in rows if r and r[0] in architectures()}


def test_models_command_lists_every_arch_with_its_parameter_count(
    table_rows: dict[str, str],
) -> None:
    rows = table_rows
    assert sorted(rows) == architectures()
    for arch in architectures():
        spec = model_spec(arch)
        counts = {**PARAMS, **PAPER_COUNTS}
        count = counts.get((arch, spec.patch_size)) or counts.get((arch, 64))
        if arch == "bondi2017":  # tests/test_bondi2017.py: 340,642 at 18 classes
            count = 340_642 - 8 * (128 + 1)
        if arch == "inceptionv3":
            count = PARAMS["inceptionv3", 96]
        assert f"{count:,}" in rows[arch]
        assert f"{spec.patch_size} ({spec.min_patch_size})" in rows[arch]


def test_models_command_counts_tuama_flops_of_the_paper_layers(table_rows: dict[str, str]) -> None:
    row = table_rows["tuama2016"]
    # KV 252^2*3*25, conv1 125^2*64*27, conv2 62^2*64*1600, conv3 31^2*32*576, fc 7200*4096,
    # 4096*4096, 4096*10 multiply-adds, x2 FLOPs each; LRN's banded 1x1 conv is not counted
    macs = (
        252**2 * 3 * 25
        + 125**2 * 64 * 27
        + 62**2 * 64 * 1600
        + 31**2 * 32 * 576
        + 7200 * 4096
        + 4096 * 4096
        + 4096 * 10
    )
    assert f"{2 * macs / 1e9:.3f}" in row


def _arch_literals(tree: ast.AST, archs: set[str]) -> list[int]:
    """Lines of dict keys or set/tuple/list elements that name an architecture."""
    lines = []
    for node in ast.walk(tree):
        elements = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
        if isinstance(node, (ast.Dict, ast.Set, ast.Tuple, ast.List)):
            named = [e for e in elements if isinstance(e, ast.Constant) and e.value in archs]
            lines += [e.lineno for e in named]
    return lines


def test_no_module_but_the_specs_keeps_a_table_of_architectures() -> None:
    archs = set(architectures())
    legacy = ("DEFAULT_PROTOCOL", "DEFAULT_PATCHES", "SVM_ARCHS", "default_patch_size")
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert not [n for n in legacy if n in text], path
        assert _arch_literals(ast.parse(text), archs) == [], path
