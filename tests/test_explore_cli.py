"""The exploration commands end to end through `vaelab.cli.main`, good input and bad."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaelab.cli import main


@pytest.fixture(scope="module")
def run(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable copy of the shared run (commands write their PNGs into the run folder)."""
    copy = tmp_path_factory.mktemp("explore") / "digits"
    shutil.copytree(digits_run, copy)
    return copy


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """compare-latent with one tiny epoch per model; its VAE is also our 2-D run."""
    runs = tmp_path_factory.mktemp("compare")
    assert main(["compare-latent", "--data", "digits", "--epochs", "1", "--hidden", "16",
                 "--runs-dir", str(runs), "--save-array"]) == 0
    return runs / "compare-latent-digits"


def ok(argv: list[str], out: Path) -> None:
    assert main(argv) == 0
    assert out.is_file() and out.stat().st_size > 1000


def bad(argv: list[str], capsys: pytest.CaptureFixture[str], match: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(match, err), err


def test_interpolate(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "interp.png"
    ok(["interpolate", str(run), "--from", "0", "2", "--to", "1", "3", "--steps", "6",
        "--method", "slerp", "--out", str(out), "--save-array"], out)
    assert np.load(out.with_suffix(".npy")).shape == (2, 6, 1, 8, 8)
    image = tmp_path / "seven.png"  # 20x20 RGB: converted to grey and resized to 8x8
    Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8)).save(image)
    ok(["interpolate", str(run), "--from", str(image), "--to", "5", "--out", str(out)], out)
    bad(["interpolate", str(run), "--from", "100000", "--out", str(out)], capsys,
        "index out of range; the test set has 359")
    bad(["interpolate", str(run), "--from", "0", "1", "--to", "2"], capsys, "one end per start")
    bad(["interpolate", str(run), "--from", "nope.png"], capsys, "not a test-set index")
    bad(["interpolate", str(run), "--out", str(tmp_path / "a.jpg")], capsys, "expected a .png")


def test_arithmetic(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "arith.png"
    ok(["arithmetic", str(run), "--from-class", "1", "--to-class", "7", "--scale", "1.5",
        "--out", str(out), "--save-array"], out)
    assert np.load(out.with_suffix(".npy")).shape == (6, 5, 1, 8, 8)
    ok(["arithmetic", str(run), "--attribute", "3", "--images", "0", "1", "--out", str(out)], out)
    bad(["arithmetic", str(run), "--attribute", "glasses"], capsys,
        "unknown attribute 'glasses': the labels are 0, 1")
    bad(["arithmetic", str(run)], capsys, "say which vector")


def test_arithmetic_from_an_attribute_table(run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["file,bright,dark"]
    for i in range(12):  # bright images have the attribute
        level = 230 if i % 2 else 30
        Image.fromarray(np.full((16, 16), level, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,{i % 2},{1 - i % 2}")
    table = tmp_path / "attributes.csv"
    table.write_text("\n".join(rows) + "\n")
    out = tmp_path / "attr.png"
    ok(["arithmetic", str(run), "--attributes", str(table), "--attribute", "bright",
        "--out", str(out)], out)
    bad(["arithmetic", str(run), "--attributes", str(table), "--attribute", "smiling"], capsys,
        "unknown attribute 'smiling': attributes.csv has bright, dark")


def test_traverse(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trav.png"
    ok(["traverse", str(run), "--dims", "top", "--out", str(out), "--save-array"], out)
    assert np.load(out.with_suffix(".npy")).shape == (4, 9, 1, 8, 8)  # all 4 dims, 9 steps
    ok(["traverse", str(run), "--dims", "0,2", "--index", "3", "--range", "2", "--steps", "5",
        "--out", str(out)], out)
    bad(["traverse", str(run), "--dims", "9"], capsys, "dimensions 0..3")
    bad(["traverse", str(run), "--index", "5000"], capsys, "index out of range")


def test_latent(run: Path, compared: Path, tmp_path: Path) -> None:
    out = tmp_path / "map.png"
    ok(["latent", str(run), "--out", str(out), "--save-array"], out)  # 4-D: PCA
    assert np.load(out.with_suffix(".npy")).shape == (359, 2)
    ok(["latent", str(run), "--method", "tsne", "--limit", "100", "--out", str(out)], out)
    ok(["latent", str(compared / "elbo"), "--grid", "6", "--out", str(out), "--save-array"], out)
    assert np.load(tmp_path / "map-manifold.npy").shape == (6, 6, 1, 8, 8)


def test_compare_latent(compared: Path) -> None:
    assert (compared / "compare-latent.png").is_file()
    codes = np.load(compared / "compare-latent.npy")
    assert codes.shape == (3, 359, 2)
    assert codes[1].std() < codes[0].std()  # KL-only codes huddle at the prior mean


def test_inpaint_and_denoise(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "inpaint.png"
    for mask in ["right", "random:0.3"]:
        ok(["inpaint", str(run), "--mask", mask, "--out", str(out), "--save-array"], out)
    assert "mean-image baseline" in capsys.readouterr().out
    ok(["inpaint", str(run), "--images", "4", "5", "--out", str(out)], out)
    bad(["inpaint", str(run), "--mask", "middle"], capsys, "--mask must be")
    out = tmp_path / "denoise.png"
    for noise in ["gaussian:0.3", "saltpepper:0.2"]:
        ok(["denoise", str(run), "--noise", noise, "--out", str(out), "--save-array"], out)
    assert np.load(out.with_suffix(".npy")).shape == (8, 1, 8, 8)
    bad(["denoise", str(run), "--noise", "saltpepper:2"], capsys, "between 0 and 1")


def test_report(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "r"
    shutil.copytree(run, folder)
    for name in ["samples.png", "traverse.png", "latent-map.png", "evaluation-test.json"]:
        (folder / name).unlink(missing_ok=True)
    assert main(["report", str(folder), "--samples", "5"]) == 0
    page = (folder / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "not available" not in page
    for name in ["samples.png", "traverse.png", "latent-map.png", "evaluation-test.json"]:
        assert (folder / name).is_file()  # regenerated
    assert "cross-entropy, IS k=5 (nats)" in page and "&quot;latent_dim&quot;: 4" in page
    bad(["report", str(tmp_path / "missing")], capsys, "run folder not found")
