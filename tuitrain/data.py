"""Provides the data sets (synthetic and MNIST-type) as train/valid/test tensors on a device."""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuitrain.config import DataConfig
from tuitrain.errors import DataUnavailable, UsageError

DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# torchvision class names double as the cache folder names it downloads into
TORCHVISION_NAMES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
# input shape and output count per data set, known without loading it (network summaries)
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "blobs": ((2,), 1), "rings": ((2,), 3), "square": ((1,), 1), "wave": ((1,), 1),
    "mnist": ((1, 28, 28), 10), "fashion-mnist": ((1, 28, 28), 10)}
CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    "blobs": ["blue", "orange"],
    "rings": ["inner", "middle", "outer"],
}
DEFAULT_SAMPLES = {"blobs": 2000, "rings": 15000, "square": 10000, "wave": 1000}


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Dataset:
    name: str
    task: str  # "binary" (one logit), "classes" (one logit per class) or "regression"
    train: Split
    valid: Split
    test: Split
    num_outputs: int
    class_names: list[str] = field(default_factory=list)
    source: str = ""  # where the data came from, for humans
    x_mean: torch.Tensor | None = None  # set when inputs were standardized
    x_std: torch.Tensor | None = None
    y_mean: torch.Tensor | None = None  # set when regression targets were standardized
    y_std: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def is_image(self) -> bool:
        return self.train.x.dim() == 4


# ----------------------------------------------------------------------------- synthetic sets

def _blobs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    labels = torch.randint(0, 2, (n,), generator=g)
    centers = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    x = centers[labels] + 0.6 * torch.randn(n, 2, generator=g)  # std 0.6: ~1% overlap
    return x, labels.float().unsqueeze(1)


def _rings(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 2, generator=g) * 2 - 1
    r = x.norm(dim=1)
    labels = (r >= 0.5).long() + (r >= 1.0).long()
    return x, labels


def _square(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, generator=g) * 2 - 1
    return x, x.pow(2)


def wave_trend(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) + 0.5 * x


def _wave(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, 1, generator=g) * 8 - 4
    return x, wave_trend(x) + 0.3 * torch.randn(n, 1, generator=g)


SYNTHETIC = {"blobs": (_blobs, "binary"), "rings": (_rings, "classes"),
             "square": (_square, "regression"), "wave": (_wave, "regression")}


def _synthetic(cfg: DataConfig, seed: int) -> Dataset:
    make, task = SYNTHETIC[cfg.dataset]
    n = cfg.samples or DEFAULT_SAMPLES[cfg.dataset]
    g = torch.Generator().manual_seed(seed)
    x, y = make(n, g)
    order = torch.randperm(n, generator=g)
    n_test = max(1, round(n * cfg.test_fraction))
    n_valid = max(1, round(n * cfg.valid_fraction))
    if n - n_test - n_valid < 1:
        raise UsageError(f"data.samples = {n} leaves no training points after the valid/test split")
    test, valid, train = order[:n_test], order[n_test:n_test + n_valid], order[n_test + n_valid:]
    outputs = 3 if cfg.dataset == "rings" else 1
    return Dataset(cfg.dataset, task, Split(x[train], y[train]), Split(x[valid], y[valid]),
                   Split(x[test], y[test]), outputs, CLASS_NAMES.get(cfg.dataset, []),
                   source=f"synthetic, {n} points")


# ----------------------------------------------------------------------------- MNIST-type sets

def cache_dir() -> Path:
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "tuitrain" / "data"


def _idx_dir_candidates(dataset: str, data_dir: str) -> list[Path]:
    if data_dir:
        root = Path(data_dir).expanduser()
        return [root, root / TORCHVISION_NAMES[dataset] / "raw"]
    dirs = [cache_dir() / TORCHVISION_NAMES[dataset] / "raw"]
    if dataset == "fashion-mnist":
        dirs.append(DEBIAN_FASHION_DIR)
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_idx_files(dataset: str, data_dir: str = "") -> dict[str, Path] | None:
    """The four IDX files of the first folder that holds all of them, or None."""
    for folder in _idx_dir_candidates(dataset, data_dir):
        files = {key: _find_file(folder, stem) for key, stem in IDX_FILES.items()}
        if all(files.values()):
            return files  # type: ignore[return-value]
    return None


def data_status(dataset: str, data_dir: str = "") -> str:
    """'ready' (on disk or synthetic) or 'download' (fetched on first use, needs internet)."""
    if dataset in SYNTHETIC or find_idx_files(dataset, data_dir):
        return "ready"
    return "download"


def ensure_available(cfg: DataConfig) -> None:
    """Fetch an MNIST-type set now if it is missing (raising DataUnavailable offline); cheap otherwise."""
    if cfg.dataset not in SYNTHETIC and find_idx_files(cfg.dataset, cfg.data_dir) is None:
        if cfg.data_dir:
            raise DataUnavailable(f"{cfg.data_dir} does not hold the {cfg.dataset} IDX files "
                                  f"({', '.join(IDX_FILES.values())}, optionally .gz)")
        _download(cfg.dataset)


def read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (optionally gzipped) into a uint8 tensor of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise UsageError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != math.prod(dims):
        raise UsageError(f"{path} is truncated: expected {math.prod(dims)} values for shape {dims}")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(dims)


def _download(dataset: str) -> None:
    import socket

    from torchvision import datasets  # only needed when the files are missing

    cls = getattr(datasets, TORCHVISION_NAMES[dataset])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # fail within seconds offline instead of hanging
    try:
        cls(root=str(cache_dir()), train=True, download=True)
    except Exception as exc:  # torchvision raises several kinds for a failed fetch
        hint = " or install it with: apt-get install dataset-fashion-mnist" if dataset == "fashion-mnist" else ""
        raise DataUnavailable(
            f"{dataset} is not on this machine and could not be downloaded ({type(exc).__name__}); "
            f"connect to the internet, or pass --data-dir DIR holding {IDX_FILES['train_images']}[.gz] "
            f"and the other three IDX files{hint}") from None
    finally:
        socket.setdefaulttimeout(previous)


def _images(cfg: DataConfig, seed: int) -> Dataset:
    ensure_available(cfg)
    files = find_idx_files(cfg.dataset, cfg.data_dir)
    if files is None:
        raise DataUnavailable(f"{cfg.dataset} download finished but the files are missing in {cache_dir()}")
    parts = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        if parts[f"{split}_images"].shape[0] != parts[f"{split}_labels"].shape[0]:
            raise UsageError(f"{files[f'{split}_images']}: image and label counts differ")
    # 1/255 scaling, as ToTensor does; stored as float once so no step converts anything
    train_x = parts["train_images"].unsqueeze(1).float().div_(255)
    test_x = parts["test_images"].unsqueeze(1).float().div_(255)
    train_y, test_y = parts["train_labels"].long(), parts["test_labels"].long()
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed))
    n_valid = max(1, round(train_x.shape[0] * cfg.valid_fraction))
    valid, train = order[:n_valid], order[n_valid:]
    return Dataset(cfg.dataset, "classes", Split(train_x[train], train_y[train]),
                   Split(train_x[valid], train_y[valid]), Split(test_x, test_y), 10,
                   CLASS_NAMES[cfg.dataset], source=str(files["train_images"].parent))


# ----------------------------------------------------------------------------- entry point

def _standardize(data: Dataset) -> None:
    """Scale with the training split's statistics only, so valid/test stay unseen."""
    data.x_mean, data.x_std = data.train.x.mean(0), data.train.x.std(0).clamp_min(1e-8)
    for split in (data.train, data.valid, data.test):
        split.x = (split.x - data.x_mean) / data.x_std
    if data.task == "regression":
        data.y_mean, data.y_std = data.train.y.mean(0), data.train.y.std(0).clamp_min(1e-8)
        for split in (data.train, data.valid, data.test):
            split.y = (split.y - data.y_mean) / data.y_std


def load_dataset(cfg: DataConfig, seed: int, device: torch.device | str = "cpu") -> Dataset:
    data = _synthetic(cfg, seed) if cfg.dataset in SYNTHETIC else _images(cfg, seed)
    if cfg.standardize:
        _standardize(data)
    for split in (data.train, data.valid, data.test):
        split.x, split.y = split.x.to(device), split.y.to(device)
    return data
