"""`export --format png` (tuitrain.exports.pictures): the pictures read back, their index, the folder swap."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from conftest import train_tiny

from tuitrain.config import resolve_config
from tuitrain.errors import UsageError
from tuitrain.exports import pictures
from tuitrain.exports.pictures import PLOT, write_pictures
from tuitrain.runs import start as session
from tuitrain.store.run_dir import CHECKPOINTS
from tuitrain.training.units import MAP_SIDE, TOP_TEMPLATES

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> torch.Tensor:
    from torchvision.io import decode_png

    data = path.read_bytes()
    assert data[:8] == SIGNATURE, path
    with warnings.catch_warnings():  # torchvision 0.29's note that its codecs move to torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8))


def trained(folder: Path, preset: str, samples: int | None = None, hidden: list[int] | None = None, **overrides):
    config = resolve_config(preset, epochs=1, **overrides)
    if samples is not None:
        config.data.samples = samples
    if hidden is not None:
        config.model.hidden = hidden
    trainer, writer = session.new_run(config, folder)
    trainer.run()
    writer.close()
    return Path(writer.run_dir)


def referenced(out: Path) -> set[str]:
    return set(re.findall(r'<img src="([^"]+)"', (out / "index.html").read_text()))


@pytest.fixture(scope="module")
def rings_run(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("rings"), epochs=1)


def test_rings_one_map_per_hidden_unit_and_the_decision_regions(rings_run, tmp_path):
    out = tmp_path / "pictures"
    lines = write_pictures(rings_run, out, "last")
    files = sorted(p.name for p in out.iterdir())
    for layer in ("layers.1", "layers.3"):  # tiny rings: 32 and 32 hidden units
        assert [f for f in files if f.startswith(f"{layer}-unit")] == [f"{layer}-unit{j:03d}.png" for j in range(32)]
    assert "decision-regions.png" in files and "index.html" in files and len(files) == 2 + 64
    side = MAP_SIDE * 8  # 24 cells, 8 pixels each
    for name in files:
        if name.endswith(".png"):
            assert read_png(out / name).shape == (3, side, side)
    assert referenced(out) == {f for f in files if f.endswith(".png")}
    assert "layers.1" in (out / "index.html").read_text() and "as of epoch 1" in (out / "index.html").read_text()
    assert any("layers.1-unit*.png" in line and "32 pictures" in line for line in lines)
    assert lines[-1].startswith(str(out / "index.html"))


def test_a_unit_map_is_coloured_by_its_activation(rings_run, tmp_path):
    from tuitrain.data.sets import load_dataset
    from tuitrain.exports.formats import checkpoint_model
    from tuitrain.training.units import compute_units

    out = tmp_path / "pictures"
    write_pictures(rings_run, out, "last")
    model, config, _, _ = checkpoint_model(rings_run, "last")
    layer = compute_units(model, load_dataset(config.data, config.train.seed)).maps.layers[0]
    unit = int(layer.activations.flatten(1).max(1).values.argmax())  # the layer's largest activation: full red
    row, col = divmod(int(layer.activations[unit].argmax()), MAP_SIDE)
    image = read_png(out / f"layers.1-unit{unit:03d}.png")
    top = (MAP_SIDE - 1 - row) * 8  # the plane's bottom row is the picture's last
    assert image[:, top + 4, col * 8 + 4].tolist() == [178, 24, 43]
    zero = (layer.activations[unit] == 0).nonzero()
    if len(zero):  # ReLU's zeros are white
        row, col = zero[0].tolist()
        assert image[:, (MAP_SIDE - 1 - row) * 8, col * 8].tolist() == [255, 255, 255]


def test_a_re_export_replaces_the_old_one_and_a_failed_one_leaves_it_whole(rings_run, tmp_path, monkeypatch):
    out = tmp_path / "pictures"
    write_pictures(rings_run, out, "last")
    (out / "layers.1-unit999.png").write_bytes(SIGNATURE)  # a picture the new export does not make
    write_pictures(rings_run, out, "last")
    assert not (out / "layers.1-unit999.png").exists() and len(list(out.iterdir())) == 66
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]  # no temporaries left beside it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls = []

    def failing(folder, name, image):
        calls.append(name)
        if len(calls) > 5:
            raise OSError(28, "No space left on device")
        return real(folder, name, image)

    real = pictures._save
    monkeypatch.setattr(pictures, "_save", failing)
    with pytest.raises(OSError):
        write_pictures(rings_run, out, "last")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pictures"]


def test_a_folder_of_other_files_is_never_replaced(rings_run, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="name a new folder"):
        write_pictures(rings_run, out, "last")
    assert (out / "notes.txt").read_text() == "keep me"


def test_no_checkpoint_is_a_one_line_usage_error(tmp_path):
    run_dir = train_tiny(tmp_path / "runs", epochs=1)
    for name in CHECKPOINTS.values():
        (run_dir / name).unlink(missing_ok=True)
    with pytest.raises(UsageError) as caught:
        write_pictures(run_dir, tmp_path / "pictures", "best")
    assert "\n" not in str(caught.value) and "best.pt" in str(caught.value)
    assert not (tmp_path / "pictures").exists()


def test_a_single_neuron_has_nothing_to_draw(tmp_path):
    run_dir = trained(tmp_path / "runs", "neuron", samples=300)
    with pytest.raises(UsageError, match="no hidden units") as caught:
        write_pictures(run_dir, tmp_path / "pictures", "last")
    assert "\n" not in str(caught.value)


def test_square_one_curve_per_unit_and_the_sum(tmp_path):
    run_dir = trained(tmp_path / "runs", "square", samples=300, hidden=[12])
    out = tmp_path / "pictures"
    write_pictures(run_dir, out, "last")
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == sorted(["sum.png", *(f"layers.1-unit{j:03d}.png" for j in range(12))])
    assert all(read_png(out / name).shape == (3, *PLOT) for name in pngs)
    assert referenced(out) == set(pngs)
    assert "kink at x = " in (out / "index.html").read_text()


def test_lenet_one_picture_per_channel_per_stage(tmp_path, idx_dir):
    run_dir = trained(tmp_path / "runs", "lenet", dataset="mnist", data_dir=str(idx_dir))
    out = tmp_path / "pictures"
    write_pictures(run_dir, out, "last", sample=4)
    sizes = {"conv1": (6, 28), "pool1": (6, 14), "conv2": (16, 10), "pool2": (16, 5)}
    for stage, (channels, side) in sizes.items():
        names = sorted(p.name for p in out.glob(f"{stage}-ch*.png"))
        assert names == [f"{stage}-ch{c:02d}.png" for c in range(channels)]
        scale = -(-192 // side)  # upscaled to at least 192 pixels, by a whole factor
        assert read_png(out / names[0]).shape == (3, side * scale, side * scale)
    assert read_png(out / "input.png").shape == (3, 28 * 7, 28 * 7)
    assert referenced(out) == {p.name for p in out.glob("*.png")}
    assert "test sample 4" in (out / "index.html").read_text()


def test_an_mlp_on_images_shows_its_templates(tmp_path, idx_dir):
    run_dir = trained(tmp_path / "runs", "mlp", dataset="mnist", data_dir=str(idx_dir), hidden=[16])
    out = tmp_path / "pictures"
    write_pictures(run_dir, out, "last")
    templates = sorted(out.glob("template*.png"))
    assert len(templates) == TOP_TEMPLATES
    assert all(read_png(path).shape == (3, 28 * 7, 28 * 7) for path in templates)


def test_the_command_line_writes_pictures_into_the_run_and_refuses_standard_output(rings_run):
    from conftest import run_cli

    result = run_cli("export", rings_run, "--format", "png", "--checkpoint", "last")
    assert result.code == 0, result.err
    out = Path(rings_run) / "pictures"
    assert len(list(out.glob("layers.1-unit*.png"))) == 32 and (out / "index.html").is_file()
    assert str(out / "index.html") in result.out
    refused = run_cli("export", rings_run, "--format", "png", "-o", "-")
    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "Error: --format png writes a folder: -o - (standard output) is not possible"
    ]


def test_sample_picks_the_image_and_is_only_for_png(tmp_path, idx_dir, rings_run):
    from conftest import run_cli

    run = trained(tmp_path / "runs", "lenet", dataset="mnist", data_dir=str(idx_dir))
    result = run_cli("export", run, "--format", "png", "--checkpoint", "last", "--sample", "3", "-o", tmp_path / "p")
    assert result.code == 0, result.err
    assert "test sample 3" in (tmp_path / "p" / "index.html").read_text()
    refused = run_cli("export", rings_run, "--format", "csv", "--sample", "3")
    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "Error: --sample is for --format png (the test image stepped through the network)"
    ]
