"""Data sets: synthetic splits, the IDX loader on files the tests write, real Fashion-MNIST."""

from __future__ import annotations

import gzip

import pytest
import torch
from conftest import FASHION_DIR, make_idx_set

from tuitrain.config import DataConfig, apply_overrides, load_preset
from tuitrain.data.sets import data_status, find_idx_files, load_dataset, read_idx
from tuitrain.errors import DataUnavailable, UsageError
from tuitrain.training.engine import Trainer


def test_rings_labels_follow_the_radius():
    data = load_dataset(DataConfig(dataset="rings", samples=3000), seed=0)
    for split in (data.train, data.valid, data.test):
        r = split.x.norm(dim=1)
        expected = (r >= 0.5).long() + (r >= 1.0).long()
        assert torch.equal(split.y, expected)
    assert (len(data.train), len(data.valid), len(data.test)) == (2100, 450, 450)


def test_splits_are_disjoint_and_seeded():
    a = load_dataset(DataConfig(dataset="square", samples=1000), seed=3)
    b = load_dataset(DataConfig(dataset="square", samples=1000), seed=3)
    assert torch.equal(a.train.x, b.train.x)
    seen = torch.cat([a.train.x, a.valid.x, a.test.x]).flatten()
    assert seen.unique().numel() == 1000


def test_standardize_uses_training_statistics():
    data = load_dataset(DataConfig(dataset="wave", samples=1000, standardize=True), seed=0)
    assert data.train.x.mean().abs() < 1e-5 and (data.train.x.std() - 1).abs() < 1e-4
    assert data.train.y.mean().abs() < 1e-5 and data.y_std is not None


@pytest.mark.parametrize("compress", [True, False])
def test_idx_loader_reads_written_files(tmp_path, compress):
    folder = make_idx_set(tmp_path / "d", train=50, test=20, compress=compress)
    data = load_dataset(DataConfig(dataset="mnist", data_dir=str(folder), valid_fraction=0.2), seed=0)
    assert data.train.x.shape == (40, 1, 28, 28) and data.test.x.shape == (20, 1, 28, 28)
    assert data.train.x.dtype == torch.float32 and data.train.x.max() == 1.0
    # the writer drew a band at row 2*label+4: the loader must keep images and labels aligned
    rows = data.test.x[:, 0].sum(dim=2).argmax(dim=1)
    assert torch.equal(rows, 2 * data.test.y + 4)


def test_torchvision_layout_under_data_dir_is_found(tmp_path):
    make_idx_set(tmp_path / "root" / "MNIST" / "raw")
    assert find_idx_files("mnist", str(tmp_path / "root")) is not None
    assert data_status("mnist", str(tmp_path / "root")) == "ready"


def test_cache_dir_is_searched(isolated_xdg):
    make_idx_set(isolated_xdg / "cache" / "tuitrain" / "data" / "MNIST" / "raw")
    assert data_status("mnist") == "ready"


def test_truncated_idx_is_a_clear_error(tmp_path):
    folder = make_idx_set(tmp_path / "d", compress=False)
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UsageError, match="truncated"):
        read_idx(path)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(b"hello world"))
    with pytest.raises(UsageError, match="not an IDX file"):
        read_idx(bad)


def test_data_dir_without_files_says_what_is_missing(tmp_path):
    with pytest.raises(DataUnavailable, match="train-images-idx3-ubyte"):
        load_dataset(DataConfig(dataset="mnist", data_dir=str(tmp_path)), seed=0)


def test_lenet_and_mlp_learn_the_written_digits(idx_dir):
    for preset in ("mlp", "lenet"):
        config = apply_overrides(load_preset(preset), data_dir=str(idx_dir), epochs=15, batch_size=16)
        end = Trainer(config).run()
        assert end.test.accuracy >= 0.9, preset


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian dataset-fashion-mnist not installed")
@pytest.mark.slow  # an accuracy figure: a full epoch of real data
def test_fashion_mnist_mlp_one_epoch_reaches_80_percent():
    assert data_status("fashion-mnist") == "ready"
    config = apply_overrides(load_preset("mlp"), dataset="fashion-mnist", epochs=1)
    trainer = Trainer(config)
    assert (len(trainer.data.train), len(trainer.data.valid), len(trainer.data.test)) == (54000, 6000, 10000)
    end = trainer.run()
    assert end.test.accuracy >= 0.80


def test_offline_mnist_error_names_the_fashion_mnist_on_disk(monkeypatch):
    from tuitrain.data import sets as data
    from tuitrain.errors import DataUnavailable

    if data.data_status("fashion-mnist") != "ready":
        pytest.skip("Fashion-MNIST is not installed here")

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataUnavailable) as info:
        data._download("mnist")
    message = str(info.value)
    assert "--dataset fashion-mnist" in message and "RuntimeError" not in message and "\n" not in message
