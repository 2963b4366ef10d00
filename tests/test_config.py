"""Preset loading: every kind of bad file names the file and the key; user presets are found."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuitrain.config import apply_overrides, load_preset, preset_paths, resolve_preset
from tuitrain.errors import ConfigError, UsageError

DATA = Path(__file__).parent / "data"
BUILTIN = ("neuron", "mlp", "lenet", "rings", "square", "wave")


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_presets_load_and_round_trip(name, tmp_path):
    config = load_preset(name)
    assert config.name == name and config.description
    copy = tmp_path / f"{name}.toml"
    copy.write_text(config.to_toml())
    assert load_preset(str(copy)).to_dict() == config.to_dict()


def test_seed_hyperparameters_are_the_presets():
    rings, mlp, square = load_preset("rings"), load_preset("mlp"), load_preset("square")
    assert (rings.model.hidden, rings.train.lr, rings.train.batch_size) == ([100, 100], 0.01, 1000)
    assert (mlp.model.hidden, mlp.train.optimizer, mlp.train.lr, mlp.train.batch_size) == (
        [512, 256],
        "adam",
        0.001,
        64,
    )
    assert (square.model.hidden, square.train.lr) == ([100], 0.001)


@pytest.mark.parametrize(
    "file, words",
    [
        ("unknown_key.toml", ["unknown_key.toml", "train.epocs", "unknown key"]),
        ("wrong_type.toml", ["wrong_type.toml", "train.batch_size", "expected an integer"]),
        ("out_of_range.toml", ["out_of_range.toml", "data.valid_fraction", "out of range"]),
        ("syntax_error.toml", ["syntax_error.toml", "line 5"]),
        ("lenet_on_points.toml", ["lenet", "rings"]),
    ],
)
def test_bad_preset_files_name_file_and_key(file, words):
    with pytest.raises(ConfigError) as info:
        load_preset(str(DATA / file))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_user_preset_dir_is_searched_and_shadows(isolated_xdg):
    folder = isolated_xdg / "config" / "tuitrain" / "presets"
    folder.mkdir(parents=True)
    (folder / "mine.toml").write_text('description = "my own"\n[data]\ndataset = "rings"\n')
    (folder / "rings.toml").write_text('description = "shadowed"\n[data]\ndataset = "rings"\n')
    assert preset_paths()["mine"] == folder / "mine.toml"
    assert load_preset("mine").description == "my own"
    assert load_preset("rings").description == "shadowed"


def test_unknown_preset_lists_known_ones():
    with pytest.raises(UsageError, match="unknown preset 'nope'.*rings"):
        resolve_preset("nope")


def test_overrides_are_validated_like_presets():
    config = apply_overrides(load_preset("rings"), epochs=2, lr=0.5, optimizer="adam")
    assert (config.train.epochs, config.train.lr, config.train.optimizer) == (2, 0.5, "adam")
    with pytest.raises(UsageError, match="--batch-size"):
        apply_overrides(load_preset("rings"), batch_size=0)
    with pytest.raises(UsageError, match="neuron"):
        apply_overrides(load_preset("neuron"), dataset="mnist")
