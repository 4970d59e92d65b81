"""The analyst's page (``camtrace serve``): its API routes and their answers to bad input
through FastAPI's TestClient, then the page itself in a real headless Chromium driven by
Selenium (Debian's ``chromium`` and ``chromium-driver``, which .ci/run installs).

The photos are SimCam's, made here: one scene shot by two camera models of the ``default``
preset (the shipped detectors' classes), each written as the simulator writes it, with the
camera's own JPEG tables and EXIF; the examined photo has a block of the second camera's
shot pasted into the first's, a splice the block map must show. ``CAMTRACE_SCREENSHOTS=DIR``
keeps the browser's screenshots there (docs/img holds the ones the docs show).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import shutil
import struct
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install -e '.[web]'")

from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio  # noqa: E402

from camtrace.data.codec import camera_exif, save_image  # noqa: E402
from camtrace.data.images import load_rgb  # noqa: E402
from camtrace.data.manifest import Record  # noqa: E402
from camtrace.data.simcam import load_preset, render  # noqa: E402
from camtrace.errors import CamtraceError  # noqa: E402
from camtrace.models import load_detector  # noqa: E402
from camtrace.models.inference import identify  # noqa: E402
from camtrace.models.openset import detector_openset  # noqa: E402
from camtrace.web import exposed  # noqa: E402
from camtrace.web.app import create_app  # noqa: E402
from camtrace.web.uploads import Limits  # noqa: E402
from camtrace.workflows.camera_spoof import MAX_PSNR, eps_for_psnr  # noqa: E402
from camtrace.workflows.examine import BATCH_COLUMNS  # noqa: E402
from tiny_runs import ijg_luma  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

DETECTOR = "bondi2017"
SHOT, OTHER, TARGET = "Halden_H20", "Vexa_V8", "Vexa_V8"
SIZE = (384, 512)
SPLICE = (slice(128, 256), slice(256, 448))  # 2 x 3 blocks of 64 px, on the detector's grid


def shoot(model: str, out: Path) -> np.ndarray:
    """Shot 0 of ``model`` (default preset), written as SimCam writes its files."""
    camera = next(c for c in load_preset("default").models if c.label == model)
    rgb = render("default", 1, 0, SIZE, Record("x", camera.make, model, "0", "0", "0"))
    save_image(out, rgb, camera.jpeg.jpeg(), exif=camera_exif(camera.make, camera.model))
    return rgb


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("web")
    base = shoot(SHOT, root / "halden.jpg")
    other = shoot(OTHER, root / "vexa.jpg")
    spliced = base.copy()
    spliced[SPLICE] = other[SPLICE]
    camera = next(c for c in load_preset("default").models if c.label == SHOT)
    exif = camera_exif(camera.make, camera.model)
    save_image(root / "spliced.jpg", spliced, camera.jpeg.jpeg(), exif=exif)
    save_image(root / "small.jpg", base[:192, :256], camera.jpeg.jpeg(), exif=exif)
    data = (root / "halden.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) * 6 // 10])
    (root / "notes.txt").write_text("not a photo\n")
    (root / "bomb.png").write_bytes(png_header(12000, 12000))
    with zipfile.ZipFile(root / "evil.zip", "w") as zf:
        zf.writestr("photos/ok.jpg", data)
        zf.writestr("../escaped.jpg", data)
    with zipfile.ZipFile(root / "folder.zip", "w") as zf:
        zf.write(root / "halden.jpg", "case/halden.jpg")
        zf.write(root / "vexa.jpg", "case/vexa.jpg")
        zf.writestr("case/readme.txt", "notes")
        zf.writestr("__MACOSX/case/._halden.jpg", "resource fork")
    return {p.stem: p for p in root.iterdir()}


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


def finished(client: TestClient, job: dict, timeout: float = 60) -> dict:
    """Poll a job until it ends; its final state."""
    end = time.monotonic() + timeout
    while job["state"] not in ("done", "failed"):
        assert time.monotonic() < end, f"job {job['id']} still {job['state']}"
        time.sleep(0.1)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def one_line(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and len(text) < 400


# -- the API ------------------------------------------------------------------------------------


def test_identify_answers_as_the_library_and_reads_the_file(client, photos) -> None:
    reply = client.post(
        "/api/identify", files={"file": ("halden.jpg", photos["halden"].read_bytes())}
    )
    assert reply.status_code == 200, reply.text
    got = reply.json()
    det = load_detector(DETECTOR)
    calibration = detector_openset(det)  # the zoo's, where it ships one
    openset = None if isinstance(calibration, str) else calibration
    expected = identify(det, load_rgb(photos["halden"]), openset=openset)
    assert got["identification"]["model"] == expected.model
    assert got["identification"]["nearest"] == expected.nearest
    assert got["identification"]["vote_share"] == pytest.approx(expected.vote_share, abs=1e-4)
    assert got["exif"] == {"make": "Halden", "model": "H20", "label": SHOT}
    assert got["jpeg"]["quality"] == 80 and got["jpeg"]["subsampling"] == "4:2:2"  # the preset's
    assert got["jpeg"]["match"] == (expected.nearest == SHOT)
    assert got["sha256"] == hashlib.sha256(photos["halden"].read_bytes()).hexdigest()
    names = [c["name"] for c in got["checks"]]
    assert {"EXIF", "JPEG tables", "PRNU", "spoof detector", "open set"} <= {
        n.removesuffix(" disagrees").removesuffix(" differ") for n in names
    }


def test_an_examination_maps_every_block_and_the_report_holds_it(client, photos) -> None:
    [photo] = client.post(
        "/api/photos", files=[("files", ("spliced.jpg", photos["spliced"].read_bytes()))]
    ).json()
    job = finished(client, client.post(f"/api/photos/{photo['id']}/examine").json())
    exam = job["result"]
    grid = exam["blocks"]
    assert (exam["width"], exam["height"]) == (SIZE[1], SIZE[0])
    assert grid["size"] == 64 and len(grid["labels"]) == (SIZE[0] // 64) * (SIZE[1] // 64)
    assert [tuple(p) for p in grid["positions"]][:2] == [(0, 0), (0, 64)]  # row-major
    spliced = [
        exam["classes"][label]
        for label, (y, x) in zip(grid["labels"], grid["positions"])
        if 128 <= y < 256 and 256 <= x < 448
    ]
    assert spliced.count(OTHER) >= 4, spliced  # the pasted region votes for its own camera
    report = client.get(f"/photos/{photo['id']}/report")
    assert report.status_code == 200
    html = report.text
    assert (
        "spliced.jpg" in html and hashlib.sha256(photos["spliced"].read_bytes()).hexdigest() in html
    )
    assert html.count('src="data:image/png;base64,') == 2 and exam["answer"] in html


def test_a_block_score_is_the_share_of_duels_its_winner_won(client, photos) -> None:
    """Bondi's one-vs-one SVMs: a block's winner won votes of its C - 1 duels."""
    import torch

    from camtrace.data.patches import grid_patches
    from camtrace.models.inference import embed_patches

    [photo] = client.post(
        "/api/photos", files=[("files", ("h.jpg", photos["halden"].read_bytes()))]
    ).json()
    grid = finished(client, client.post(f"/api/photos/{photo['id']}/examine").json())["result"]
    det = load_detector(DETECTOR)
    features = embed_patches(det, grid_patches(load_rgb(photos["halden"]), 64))
    votes = det.svm.votes(torch.from_numpy(features)).numpy()
    assert votes.sum(1) == pytest.approx(45)  # C (C - 1) / 2 duels a block, C = 10
    won = votes.max(1) / 9
    assert np.abs(np.array(grid["blocks"]["score"]) - won).max() < 1 / 27  # tie-break < 1/3 vote
    unique = (votes == votes.max(1, keepdims=True)).sum(1) == 1  # no tie to break
    assert np.array_equal(np.array(grid["blocks"]["labels"])[unique], votes.argmax(1)[unique])


def test_the_reports_map_is_the_photo_averaged_in_squares() -> None:
    from skimage.transform import downscale_local_mean

    from camtrace.workflows.examine import reduced

    rgb = np.random.default_rng(0).integers(0, 256, (130, 258, 3), dtype=np.uint8)
    small, f = reduced(rgb, 64, width=64)
    assert f == 4  # 258 // 8 < 64 px wide
    expected = downscale_local_mean(rgb[:128, :256].astype(float), (4, 4, 1))
    assert np.array_equal(small, np.rint(expected).astype(np.uint8))
    assert reduced(rgb, 6, width=64)[1] == 2  # a power of two that divides the block


def test_a_jpeg_spoof_carries_the_target_cameras_tables(client, photos) -> None:
    [photo] = client.post(
        "/api/photos", files=[("files", ("halden.jpg", photos["small"].read_bytes()))]
    ).json()
    job = client.post(
        f"/api/photos/{photo['id']}/spoof",
        data={"target": "Ostara_Q1", "budget": "eps", "value": "4", "output": "jpeg"},
    ).json()
    result = finished(client, job)["result"]
    download = client.get(f"/api/spoofs/{result['id']}/download")
    assert download.headers["content-disposition"].endswith('"halden_as_Ostara_Q1.jpg"')
    with Image.open(io.BytesIO(download.content)) as im:
        assert list(im.quantization[0]) == ijg_luma(75)  # Ostara Q1: IJG quality 75, no tweak
    again = client.post("/api/identify", files={"file": ("s.jpg", download.content)}).json()
    # read as Ostara Q1 by the closed set (the open set may also say "unknown": a spoof)
    assert again["identification"]["nearest"] == result["after"]["nearest"] == "Ostara_Q1"
    assert result["open_set"] == again["identification"]["model"]  # Identify's own answer
    assert result["success"] and again["jpeg"]["match"] and again["jpeg"]["quality"] == 75
    clean = load_rgb(photos["small"])
    written = np.asarray(Image.open(io.BytesIO(download.content)).convert("RGB"))
    assert result["psnr"] == pytest.approx(peak_signal_noise_ratio(clean, written), abs=1e-3)
    assert result["attack_linf"] <= 4 and result["attack_psnr"] >= 20 * math.log10(255 / 4)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("truncated", "corrupt or truncated"),
        ("notes", "not an image"),
        ("bomb", "decompression bomb"),
        ("evil", "a zip archive; give it to Batch"),
    ],
)
def test_a_bad_photo_is_one_line_naming_it(client, photos, name, expected) -> None:
    path = photos[name]
    reply = client.post("/api/photos", files=[("files", (path.name, path.read_bytes()))])
    assert reply.status_code == 200
    [answer] = reply.json()
    assert answer["error"].startswith(f"{path.name}: ") and expected in answer["error"]
    assert one_line(answer["error"]) and "camtrace-web-" not in answer["error"]
    assert client.get("/api/health").json()["ok"]


def test_the_type_comes_from_the_content_not_the_name(client, photos) -> None:
    reply = client.post(
        "/api/photos",
        files=[
            ("files", ("notes.txt", photos["halden"].read_bytes())),
            ("files", ("photo.jpg", b"GIF89a" + bytes(64))),
        ],
    ).json()
    assert reply[0]["format"] == "JPEG" and "error" not in reply[0]
    assert reply[1]["error"].startswith("photo.jpg: ")


def test_a_tiff_is_shown_as_the_pixels_the_detector_reads(client, photos) -> None:
    """Browsers read no TIFF: the page gets a PNG of the same pixels."""
    rgb = load_rgb(photos["halden"])
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="TIFF", compression="tiff_lzw")
    [photo] = client.post("/api/photos", files=[("files", ("h.tif", buffer.getvalue()))]).json()
    assert photo["format"] == "TIFF"
    shown = client.get(f"/api/photos/{photo['id']}/image")
    assert shown.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(shown.content))), rgb)


def test_uploads_get_random_names_and_go_with_the_server(photos) -> None:
    app = create_app()
    with TestClient(app) as c:
        [photo] = c.post(
            "/api/photos",
            files=[("files", ("../../etc/passwd.jpg", photos["halden"].read_bytes()))],
        ).json()
        root = app.state.service.store.root
        stored = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        assert stored == [f"{photo['id']}/upload"] and len(photo["id"]) == 24
        assert photo["name"] == "../../etc/passwd.jpg"  # shown back, never used as a path
    assert not root.exists()


def test_a_body_over_the_limit_is_refused_and_the_server_goes_on(photos) -> None:
    with TestClient(create_app(limits=Limits(request_bytes=50_000))) as c:
        data = photos["halden"].read_bytes()
        assert len(data) > 50_000
        said = c.post("/api/photos", files=[("files", ("big.jpg", data))])
        assert said.status_code == 413 and "over the server's limit" in said.json()["error"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b"--x\r\nContent-Disposition: form-data; name=files; filename=a.jpg\r\n\r\n"
            for start in range(0, len(data), 8192):
                yield data[start : start + 8192]
            yield b"\r\n--x--\r\n"

        streamed = c.post(
            "/api/photos",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
        assert streamed.status_code == 413 and one_line(streamed.json()["error"])
        assert c.get("/api/health").status_code == 200


def zip_with(entry: str, symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo(entry)
        if symlink:
            info.external_attr = 0o120777 << 16
        zf.writestr(info, "x")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entry", "symlink", "expected"),
    [
        ("../escaped.jpg", False, "points outside the archive"),
        ("case/../../escaped.jpg", False, "points outside the archive"),
        ("/etc/escaped.jpg", False, "points outside the archive"),
        ("C:/escaped.jpg", False, "points outside the archive"),
        ("case/link.jpg", True, "symbolic link"),
    ],
)
def test_a_zip_that_could_write_outside_is_refused_whole(client, entry, symlink, expected):
    reply = client.post("/api/batch", files=[("files", ("case.zip", zip_with(entry, symlink)))])
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error.startswith("case.zip: ") and expected in error and one_line(error)


def test_a_batch_gives_a_row_per_file_and_its_csv(client, photos) -> None:
    job = client.post(
        "/api/batch",
        files=[
            ("files", ("folder.zip", photos["folder"].read_bytes())),
            ("files", ("loose/notes.txt", photos["notes"].read_bytes())),
        ],
    ).json()
    result = finished(client, job)["result"]
    rows = {r["file"]: r for r in result["rows"]}
    assert set(rows) == {"case/halden.jpg", "case/vexa.jpg", "case/readme.txt", "loose/notes.txt"}
    assert rows["case/halden.jpg"]["EXIF model"] == SHOT and rows["case/vexa.jpg"]["prediction"]
    assert (
        rows["case/readme.txt"]["prediction"] == ""
        and "not an image" in rows["case/readme.txt"]["flags"]
    )
    table = client.get(f"/api/batch/{result['id']}.csv")
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    assert tuple(parsed[0]) == BATCH_COLUMNS and {r["file"] for r in parsed} == set(rows)


def test_unknown_ids_and_choices_are_one_line(client, photos) -> None:
    for url in ("/api/jobs/nope", "/api/spoofs/nope/image", "/api/photos/nope/image"):
        reply = client.get(url)
        assert reply.status_code == 404 and one_line(reply.json()["error"])
    [photo] = client.post(
        "/api/photos", files=[("files", ("h.jpg", photos["halden"].read_bytes()))]
    ).json()
    for data, expected in [
        ({"target": "Nokia_3310"}, "not a class of this detector"),
        ({"target": TARGET, "detector": "dir:../../x.safetensors"}, "not on offer"),
        ({"target": TARGET, "budget": "psnr", "value": "60"}, "at most 48.1 dB"),
        ({"target": TARGET, "method": "jsma"}, "method 'jsma'"),
    ]:
        reply = client.post(f"/api/photos/{photo['id']}/spoof", data=data)
        assert reply.status_code == 400 and expected in reply.json()["error"], reply.text


def test_a_folder_of_checkpoints_is_offered_beside_the_zoo(tmp_path, photos) -> None:
    from camtrace.models.zoo import pretrained

    (tmp_path / "mine").mkdir()
    shutil.copy(pretrained(DETECTOR).path, tmp_path / "mine" / "det.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with TestClient(create_app(tmp_path)) as c:
        keys = [d["key"] for d in c.get("/api/detectors").json()]
        assert DETECTOR in keys and "dir:mine/det.safetensors" in keys
        assert "dir:junk.safetensors" not in keys
        reply = c.post(
            "/api/identify",
            data={"detector": "dir:mine/det.safetensors"},
            files={"file": ("h.jpg", photos["halden"].read_bytes())},
        )
        assert reply.json()["detector"] == "dir:mine/det.safetensors"


def test_an_open_set_calibration_beside_a_checkpoint_is_used(tmp_path, photos) -> None:
    """A calibration (here by hand: the vote share, threshold 0.95) beside a checkpoint of
    the folder answers "unknown model" below its threshold and names the nearest model."""
    from camtrace.models.openset import OpenSet, save_openset, sidecar_path
    from camtrace.models.zoo import pretrained, sha256_of

    checkpoint = tmp_path / "det.safetensors"
    shutil.copy(pretrained(DETECTOR).path, checkpoint)
    classes = tuple(load_detector(checkpoint).classes)
    calibration = OpenSet(sha256_of(checkpoint), classes, 32, 0.05, "vote", {"vote": 0.95})
    save_openset(calibration, sidecar_path(checkpoint))
    with TestClient(create_app(tmp_path)) as c:
        said = {}
        for name in ("halden", "spliced"):
            reply = c.post(
                "/api/identify",
                data={"detector": "dir:det.safetensors"},
                files={"file": (f"{name}.jpg", photos[name].read_bytes())},
            ).json()
            said[name] = (reply, {x["name"]: x for x in reply["checks"]})
    halden, checks = said["halden"]
    assert halden["identification"]["vote_share"] >= 0.95 and halden["answer"] == SHOT
    assert checks["open set"]["status"] == "pass"
    spliced, checks = said["spliced"]
    assert spliced["identification"]["vote_share"] < 0.95  # the pasted blocks vote elsewhere
    assert spliced["answer"] == f"unknown model (nearest {SHOT})"
    assert checks["unknown model"]["status"] == "warn"


def test_a_generator_in_the_folder_is_a_spoofing_method(tmp_path, photos) -> None:
    """A MISLGAN generator (untrained weights: the plumbing, not Chen's numbers) of the
    detector's classes is offered with its own target (beside the zoo's shipped ones), and
    spoofs through the same job."""
    from camtrace.attacks.generative.checkpoint import save_generator
    from camtrace.attacks.generative.methods import get_method

    classes = load_detector(DETECTOR).classes
    generator = get_method("mislgan").build({})
    card = {"method": "mislgan", "target": TARGET, "target_index": classes.index(TARGET)}
    card |= {"classes": classes, "patch_size": 64, "hparams": generator.hparams}
    save_generator(generator, tmp_path / "mislgan.safetensors", card)
    with TestClient(create_app(tmp_path)) as c:
        offered = next(d for d in c.get("/api/detectors").json() if d["key"] == DETECTOR)
        method = "gen:dir:mislgan.safetensors"
        assert offered["generator_targets"][method] == TARGET and method in offered["methods"]
        [photo] = c.post(
            "/api/photos", files=[("files", ("s.jpg", photos["small"].read_bytes()))]
        ).json()
        job = c.post(
            f"/api/photos/{photo['id']}/spoof", data={"target": "Ostara_Q1", "method": method}
        ).json()
        result = finished(c, job)["result"]
        assert result["target"] == TARGET and result["patches_attacked"] == 12  # every block
        assert result["saved"] == f"s_as_{TARGET}.png"


def test_the_prnu_check_reads_the_matching_device_against_the_answer(tmp_path, photos):
    """A fingerprint made of the photo's own noise residual matches it (a PCE far above
    Goljan's 60); the check passes when that device is of the predicted model, warns when
    it is another model's, and says no match for an unrelated fingerprint."""
    from camtrace.models.fingerprint import make_card, save_fingerprint
    from camtrace.models.prnu import ResidualSettings, noise_residual

    rgb = load_rgb(photos["halden"])
    own = noise_residual(rgb[None])[0]
    unrelated = np.random.default_rng(0).standard_normal(own.shape).astype(np.float32)
    size = own.shape
    answers = {}
    for device, k in [(f"{SHOT}_0", own), (f"{OTHER}_2", own), ("Nobody_X1_0", unrelated)]:
        folder = tmp_path / device
        folder.mkdir()
        save_fingerprint(
            folder / "k.safetensors", k, make_card(device, 1, size, ResidualSettings())
        )
        with TestClient(create_app(folder)) as c:
            reply = c.post(
                "/api/identify", files={"file": ("h.jpg", photos["halden"].read_bytes())}
            )
            assert reply.json()["answer"] == SHOT
            answers[device] = next(
                x for x in reply.json()["checks"] if x["name"].startswith("PRNU")
            )
    mine, other = answers[f"{SHOT}_0"], answers[f"{OTHER}_2"]
    assert mine["status"] == "pass" and f"{SHOT}_0" in mine["sentence"]
    assert other["status"] == "warn" and f"a {OTHER} device" in other["sentence"]
    assert answers["Nobody_X1_0"]["status"] == "info"


def test_a_spoof_detector_in_the_folder_gives_its_verdict(tmp_path, photos) -> None:
    """A spoof detector (untrained weights: the plumbing, not its accuracy) is kept apart
    from the camera-model detectors and judges the photo's 32 voting patches."""
    from camtrace.models import build, save_detector
    from camtrace.models.spoofnet import SPOOF_CLASSES

    spoofnet = build("spoofnet", list(SPOOF_CLASSES), 64)
    patches = {"name": "bondi", "size": 64, "count": 32}
    save_detector(spoofnet, tmp_path / "spoofnet.safetensors", patches=patches)
    with TestClient(create_app(tmp_path)) as c:
        keys = [d["key"] for d in c.get("/api/detectors").json()]
        assert "dir:spoofnet.safetensors" not in keys and DETECTOR in keys
        reply = c.post("/api/identify", files={"file": ("h.jpg", photos["halden"].read_bytes())})
        check = next(x for x in reply.json()["checks"] if x["name"].startswith("spoof"))
    assert check["status"] in ("pass", "warn") and "of the 32 patches" in check["sentence"]


def test_a_psnr_budget_is_the_radius_that_guarantees_it() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(20, 230, (16, 16, 3), dtype=np.uint8)
    for eps in (1, 2, 5, 16):  # a shift of exactly eps everywhere: PSNR = 20 log10(255 / eps)
        budget = peak_signal_noise_ratio(image, image + np.uint8(eps), data_range=255)
        assert eps_for_psnr(budget) == pytest.approx(eps)
    assert MAX_PSNR == pytest.approx(20 * math.log10(255))
    with pytest.raises(CamtraceError, match="at most 48.1 dB"):
        eps_for_psnr(50)


def test_other_sites_and_other_host_names_are_refused(photos) -> None:
    """A cross-site POST (another page's Origin) and, on loopback, a foreign Host header (DNS
    rebinding) are refused; the page's own requests pass."""
    files = [("files", ("h.jpg", photos["halden"].read_bytes()))]
    with TestClient(
        create_app(hosts=["127.0.0.1", "localhost"]), base_url="http://127.0.0.1:8000"
    ) as c:
        own = c.post("/api/photos", files=files, headers={"origin": "http://127.0.0.1:8000"})
        assert own.status_code == 200 and "id" in own.json()[0]
        other = c.post("/api/photos", files=files, headers={"origin": "http://evil.example"})
        assert other.status_code == 403 and "cross-site request" in other.json()["error"]
        assert c.get("/api/health", headers={"host": "evil.example"}).status_code == 400


def test_only_loopback_stays_on_this_machine(monkeypatch) -> None:
    from typer.testing import CliRunner

    from camtrace.cli import app

    assert not any(map(exposed, ("127.0.0.1", "127.0.0.2", "::1", "localhost")))
    assert all(map(exposed, ("0.0.0.0", "192.168.1.20", "::", "camtrace.example.org")))
    served = []
    monkeypatch.setattr("camtrace.web.serve", lambda *args: served.append(args))
    quiet = CliRunner().invoke(app, ["serve"])
    loud = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "9000"])
    assert served == [("127.0.0.1", 8000, None), ("0.0.0.0", 9000, None)]
    assert "warning" not in quiet.output and "opens the page to other machines" in loud.output


# -- the page in a real browser ----------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """The page served by uvicorn on a free loopback port, as ``camtrace serve`` runs it."""
    import uvicorn

    app = create_app(hosts=["127.0.0.1"])  # as camtrace serve on loopback
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    end = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < end and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip(
            "Chromium and chromedriver are not installed: apt-get install chromium "
            "chromium-driver (.ci/run installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1440,1200")
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    yield driver, downloads
    driver.quit()


def screenshot(driver, name: str, tmp_path: Path) -> None:
    """The browser's view, in 256 colours (a third of the bytes, for the docs)."""
    folder = Path(os.environ.get("CAMTRACE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    shot = shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    shot.save(folder / name, optimize=True)


def messages(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [
        p.text.removesuffix("×").strip()
        for p in driver.find_elements(By.CSS_SELECTOR, "#messages p.error")
    ]


@pytest.mark.slow  # 5-12 s on 2 busy cores
def test_the_page_identifies_spoofs_and_refuses_bad_files(server, browser, photos, tmp_path):
    import httpx
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    driver, downloads = browser
    wait = WebDriverWait(driver, 90, poll_frequency=0.1)
    driver.get(server)
    assert Select(driver.find_element(By.ID, "detector")).first_selected_option.text == DETECTOR

    # a photo: its answer on the page is the API's, its map shows the splice
    driver.find_element(By.ID, "files").send_keys(str(photos["spliced"]))
    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "article.photo"))
    prediction = card.find_element(By.CSS_SELECTOR, '[data-role="prediction"]')
    wait.until(lambda d: prediction.text)
    api = httpx.post(
        f"{server}/api/identify",
        files={"file": ("s.jpg", photos["spliced"].read_bytes())},
        timeout=60,
    ).json()
    assert prediction.text == api["answer"]
    legend = card.find_element(By.CSS_SELECTOR, '[data-role="legend"]').text
    assert OTHER in legend and api["answer"] in legend
    viewer = card.find_element(By.CSS_SELECTOR, '[data-role="viewer"]')
    ActionChains(driver).move_to_element_with_offset(viewer, 200, 40).perform()  # the splice
    tip = card.find_element(By.CSS_SELECTOR, '[data-role="tip"]')
    wait.until(lambda d: tip.is_displayed() and "score" in tip.text)
    assert tip.text.startswith(OTHER)
    screenshot(driver, "web-examine.png", tmp_path)

    # spoof it toward another model, download the file, ask the API what it is now
    Select(card.find_element(By.CSS_SELECTOR, '[data-role="target"]')).select_by_value(TARGET)
    card.find_element(By.CSS_SELECTOR, '[data-role="spoof-run"]').click()
    answer = card.find_element(By.CSS_SELECTOR, '[data-role="spoof-answer"]')
    wait.until(lambda d: answer.text or messages(d))
    assert not messages(driver) and answer.text == TARGET
    link = card.find_element(By.CSS_SELECTOR, '[data-role="spoof-download"]')
    driver.execute_script("arguments[0].scrollIntoView()", link)
    screenshot(driver, "web-spoof.png", tmp_path)
    link.click()
    written = downloads / f"spliced_as_{TARGET}.png"
    wait.until(lambda d: written.is_file() and written.stat().st_size > 0)
    time.sleep(0.2)  # Chrome renames the .crdownload when complete
    again = httpx.post(
        f"{server}/api/identify", files={"file": ("x.png", written.read_bytes())}, timeout=60
    ).json()
    # the closed-set answer is the target; the open set may also flag the spoof as "unknown",
    # and the page says which beside the vote
    assert again["identification"]["nearest"] == TARGET and again["format"] == "PNG"
    opened = card.find_element(By.CSS_SELECTOR, '[data-role="spoof-open-set"]').text
    model = again["identification"]["model"]
    assert opened == (f"unknown model (nearest {TARGET})" if model == "unknown" else model)

    # bad files: one line each on the page, and the server goes on
    for name, expected in [
        ("truncated", "corrupt or truncated"),
        ("notes", "not an image"),
    ]:
        driver.find_element(By.ID, "files").send_keys(str(photos[name]))
        wait.until(lambda d, e=expected: any(e in m for m in messages(d)))
    driver.find_element(By.ID, "batch-files").send_keys(str(photos["evil"]))
    wait.until(lambda d: any("points outside the archive" in m for m in messages(d)))
    shown = messages(driver)
    assert all(one_line(m) for m in shown) and len(shown) == 3
    assert shown[0].startswith("evil.zip: entry '../escaped.jpg'")
    assert httpx.get(f"{server}/api/health").json()["ok"]

    # a batch: the sortable table and its CSV
    driver.find_element(By.ID, "batch-files").send_keys(str(photos["folder"]))
    table = driver.find_element(By.ID, "batch-table")
    wait.until(
        lambda d: (
            table.is_displayed() and len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == 3
        )
    )
    table.find_element(By.CSS_SELECTOR, 'th[data-col="file"]').click()
    files = [
        r.find_element(By.CSS_SELECTOR, "td").text
        for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]
    assert files == sorted(files)
    driver.execute_script("arguments[0].scrollIntoView()", table)
    screenshot(driver, "web-batch.png", tmp_path)
