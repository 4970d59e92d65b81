"""The documentation holds to the code: every result table of the README and the docs is
its own refresh from the kept runs, the CLI reference is typer's from the code, the README's
Python example runs, and the README stays one screen."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import camtrace
from camtrace.workflows.tables import BLOCK, refresh_tables

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_table_is_rendered_from_its_run(page: Path) -> None:
    text = page.read_text()
    assert refresh_tables(text, ROOT) == text, f"camtrace tables {page.relative_to(ROOT)}"


def test_the_readme_shows_its_tables_and_stays_one_screen() -> None:
    text = (ROOT / "README.md").read_text()
    kinds = {m.group(2) for m in BLOCK.finditer(text)}
    assert {"accuracy", "zoo"} <= kinds
    assert len(text.splitlines()) < 150


def test_the_cli_reference_is_typers_from_the_code(tmp_path: Path) -> None:
    typer = shutil.which("typer") or pytest.skip("the typer command is not installed")
    out = tmp_path / "cli.md"
    subprocess.run(
        [typer, "camtrace.cli", "utils", "docs", "--name", "camtrace", "--output", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_text() == (ROOT / "docs" / "cli-reference.md").read_text(), (
        "typer camtrace.cli utils docs --name camtrace --output docs/cli-reference.md"
    )


@contextlib.contextmanager
def working_in(folder: Path):
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def test_the_readme_python_example_runs(tmp_path: Path, capsys) -> None:
    code = re.search(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    manifest = camtrace.simulate("tiny", tmp_path / "sim", shots=1, size=(192, 256))
    photo = next(r for r in manifest.records if r.model != "Nimbus_N300")
    shutil.copy(manifest.abspath(photo), tmp_path / "photo.jpg")
    with working_in(tmp_path):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 (the README's own example)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(printed) >= 2 and (tmp_path / "spoofed.png").is_file()
    assert printed[-1].split()[:2] == ["Nimbus_N300", "True"]
    assert sys.modules["camtrace"] is camtrace


def test_the_transfer_table_is_spocs_table_4_layout() -> None:
    from camtrace.workflows.tables import transfer_tables

    source = {
        "n": 10,
        "distortion": {"psnr": 31.04},
        "attacked": {"plain": {"a": 0.9, "b": 0.2}, "camera": {"a": 0.5, "b": 0.1}},
    }
    other = {**source, "attacked": {"plain": {"a": 0.1, "b": 1.0}, "camera": {"a": 0, "b": 0.7}}}
    metrics = {
        "attacks": {
            "transfer": [
                {
                    "method": "pgd",
                    "eps": 8.0,
                    "detectors": ["a", "b"],
                    "sources": {"a": source, "b": other},
                }
            ]
        }
    }
    assert transfer_tables(metrics).splitlines() == [
        "| pgd, eps 8, crafted on \\ judged by | a | b | own, after JPEG camera | PSNR |",
        "|---|---|---|---|---|",
        "| `a` | **90%** | 20% | 50% | 31.0 dB |",
        "| `b` | 10% | **100%** | 70% | 31.0 dB |",
    ]


def test_the_generator_table_reads_chens_and_spocs_cards() -> None:
    from camtrace.models.zoo import GeneratorWeights
    from camtrace.workflows.tables import generator_zoo_markdown

    common = {"file": "g.safetensors", "bytes": 1, "sha256": "", "shipped": True}
    env = {"processor": "AMD EPYC", "isa": "AVX512-BF16"}
    mislgan = GeneratorWeights(
        name="mislgan-M_1", method="mislgan", target="M_1", against=("mislnet",),
        config="pretrain-mislgan", **common,
        validation={
            "sar": [0.984375], "psnr": 40.13,
            "measured": {
                "seen": {"sar": 0.94, "psnr": 41.24, "ssim": 0.9755},
                "unseen": {"sar": 0.995, "psnr": 41.06, "ssim": 0.9775},
                "photos": {"n": 18, "sar": 0.8888889, "psnr": 42.95},
            },
        },
        training={"iterations": 3150, "cpu_seconds": 5851, **env},
    )  # fmt: skip
    spoc = GeneratorWeights(
        name="spoc-M_1", method="spoc", target="M_1", config="pretrain-spoc", **common,
        validation={
            "within_d_ref": 0.25, "psnr": 31.0,
            "measured": {"synthetic": {"psnr": 30.96, "plain": {"yang2018": 0.5}}},
        },
        training={"iterations": 900, "cpu_seconds": 10800, **env},
    )  # fmt: skip
    assert generator_zoo_markdown({"a": mislgan, "b": spoc}).splitlines()[2:] == [
        "| `mislgan-M_1` | `mislnet` | seen 94.0% at 41.2 dB, SSIM 0.976; unseen 99.5% at 41.1 dB, "
        "SSIM 0.978 | 88.9% of 18 at 43.0 dB | iteration 3150: SAR 98.4%, 40.1 dB | 1.6 CPU h "
        "(AMD EPYC, AVX512-BF16) | `pretrain-mislgan` |",
        "| `spoc-M_1` | no detector | synthetic S: `yang2018` 50.0% at 31.0 dB | - | iteration "
        "900: 25.0% within d_ref, 31.0 dB | 3.0 CPU h (AMD EPYC, AVX512-BF16) | `pretrain-spoc` |",
    ]


def test_an_ensembles_members_and_judges_get_their_own_columns() -> None:
    """GAP against a + b, judged by c too: each detector's SAR, seen and unseen, in the docs'
    table of the run and in the zoo's measured cell."""
    from camtrace.models.zoo import GeneratorWeights
    from camtrace.workflows.generators.report import detector_rows
    from camtrace.workflows.tables import generator_zoo_markdown

    seen = {"sar": 0.75, "sar_by_detector": {"a": 0.5, "b": 1.0}, "psnr": 32.54, "ssim": 0.8}
    unseen = {**seen, "sar": 0.5, "sar_by_detector": {"a": 0.25, "b": 0.75}}
    targets = {
        "M_1": {"seen": seen, "unseen": unseen, "transfer": {"c": {"seen": 0.1, "unseen": 0}}}
    }
    assert detector_rows(targets) == [
        {
            "target": "M_1",
            "a, seen": "50.0%", "a, unseen": "25.0%",
            "b, seen": "100.0%", "b, unseen": "75.0%",
            "c (transfer), seen": "10.0%", "c (transfer), unseen": "0.0%",
        }
    ]  # fmt: skip
    alone = {"M_1": {"seen": {**seen, "sar_by_detector": {"a": 0.5}}}}
    assert detector_rows(alone) == []
    gap = GeneratorWeights(
        name="gap-M_1", file="g.safetensors", bytes=1, sha256="", shipped=True, method="gap",
        target="M_1", against=("a", "b"), config="pretrain-gap", storage="float16",
        validation={"sar": [1.0, 0.96875], "psnr": 32.5, "measured": {"seen": seen}},
        training={"iterations": 50, "cpu_seconds": 129, "processor": "AMD EPYC", "isa": "AVX2"},
    )  # fmt: skip
    row = generator_zoo_markdown({"g": gap}).splitlines()[2]
    assert row.startswith("| `gap-M_1` (float16) | `a`, `b` | seen 75.0% (`a` 50.0%, `b` 100.0%)")
    assert "SAR 100.0% / 96.9%, 32.5 dB" in row
