"""Provides the data sets (synthetic and MNIST-type) as train/valid/test tensors on a device."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuitrain.config import DEFAULT_SAMPLES, DataConfig
from tuitrain.data import idx
from tuitrain.data.idx import IDX_FILES, TORCHVISION_NAMES, cache_dir, data_status, find_idx_files
from tuitrain.errors import DataUnavailable, UsageError, quote

CLASS_NAMES = {
    "mnist": [str(d) for d in range(10)],
    "fashion-mnist": ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"],
    "blobs": ["blue", "orange"],
    "rings": ["inner", "middle", "outer"],
}


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


SYNTHETIC = {
    "blobs": (_blobs, "binary"),
    "rings": (_rings, "classes"),
    "square": (_square, "regression"),
    "wave": (_wave, "regression"),
}


def _check_splits(train: int, valid: int, test: int, cfg: DataConfig, origin: str, advice: str) -> None:
    """Refuse a split that leaves the training, validation or test set empty (or too small to standardize)."""
    sizes = {"training": train, "validation": valid, "test": test}
    empty = [name for name, size in sizes.items() if size < 1]
    if empty:
        raise UsageError(
            f"the {' and '.join(empty)} set{'s' if len(empty) > 1 else ''} would be empty: {origin} "
            f"split {max(train, 0):,} train / {max(valid, 0):,} valid / {max(test, 0):,} test "
            f"(valid_fraction {cfg.valid_fraction:g}); {advice}"
        )
    if cfg.standardize and train < 2:
        raise UsageError(f"data.standardize needs at least 2 training samples, {origin} leaves {train}; {advice}")


def _synthetic(cfg: DataConfig, seed: int) -> Dataset:
    make, task = SYNTHETIC[cfg.dataset]
    n = cfg.samples or DEFAULT_SAMPLES[cfg.dataset]
    n_test = min(n, max(1, round(n * cfg.test_fraction)))
    n_valid = min(n - n_test, max(1, round(n * cfg.valid_fraction)))
    _check_splits(
        n - n_test - n_valid,
        n_valid,
        n_test,
        cfg,
        f"data.samples = {n:,} (test_fraction {cfg.test_fraction:g})",
        "use more data.samples or smaller fractions",
    )
    g = torch.Generator().manual_seed(seed)
    x, y = make(n, g)
    order = torch.randperm(n, generator=g)
    test, valid, train = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    outputs = 3 if cfg.dataset == "rings" else 1
    return Dataset(
        cfg.dataset,
        task,
        Split(x[train], y[train]),
        Split(x[valid], y[valid]),
        Split(x[test], y[test]),
        outputs,
        CLASS_NAMES.get(cfg.dataset, []),
        source=f"synthetic, {n} points",
    )


def _csv(cfg: DataConfig, seed: int) -> Dataset:
    """Your own CSV file (tuitrain.data.csv_files), split like the synthetic sets."""
    from tuitrain.data.csv_files import load_table

    table = load_table(cfg.path)
    n = len(table.x)
    n_test = min(n, max(1, round(n * cfg.test_fraction)))
    n_valid = min(n - n_test, max(1, round(n * cfg.valid_fraction)))
    _check_splits(n - n_test - n_valid, n_valid, n_test, cfg, f"{n:,} rows in {quote(cfg.path)}", "add rows")
    x = torch.tensor(table.x, dtype=torch.float32)
    y = torch.tensor(table.y)
    y = y.long() if table.task == "classes" else y.float().unsqueeze(1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    test, valid, train = order[:n_test], order[n_test : n_test + n_valid], order[n_test + n_valid :]
    return Dataset(
        "csv",
        table.task,
        Split(x[train], y[train]),
        Split(x[valid], y[valid]),
        Split(x[test], y[test]),
        table.outputs,
        list(table.classes),
        source=f"{cfg.path}, {n:,} rows",
    )


# ----------------------------------------------------------------------------- MNIST-type sets


def ensure_available(cfg: DataConfig) -> None:
    """Fetch an MNIST-type set now if it is missing (raising DataUnavailable offline); cheap otherwise."""
    if cfg.dataset not in SYNTHETIC and find_idx_files(cfg.dataset, cfg.data_dir) is None:
        if cfg.data_dir:
            raise DataUnavailable(
                f"{quote(cfg.data_dir)} does not hold the {cfg.dataset} IDX files "
                f"({', '.join(IDX_FILES.values())}, optionally .gz)"
            )
        _download(cfg.dataset)


def read_idx(path: Path) -> torch.Tensor:
    """Parse an IDX file (optionally gzipped) into a uint8 tensor of its stated shape (see idx.read)."""
    dims, raw = idx.read(path)
    if not raw:
        return torch.empty(dims, dtype=torch.uint8)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(dims)


def _check_idx_pair(
    images: torch.Tensor, labels: torch.Tensor, files: dict[str, Path], split: str, classes: int
) -> None:
    """Images [n, 28, 28] and labels [n] in 0..classes-1, as many of one as of the other."""
    image_file, label_file = quote(files[f"{split}_images"]), quote(files[f"{split}_labels"])
    if images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise UsageError(
            f"{image_file}: expected 28x28 images (IDX shape [n, 28, 28]), the file holds shape {list(images.shape)}"
        )
    if labels.dim() != 1:
        raise UsageError(
            f"{label_file}: expected one label per image (IDX shape [n]), the file holds shape {list(labels.shape)}"
        )
    if images.shape[0] == 0:
        raise UsageError(f"{image_file} holds no images")
    if images.shape[0] != labels.shape[0]:
        raise UsageError(
            f"{image_file} holds {images.shape[0]:,} images but {label_file} holds {labels.shape[0]:,} labels"
        )
    wrong = labels >= classes
    if wrong.any():
        raise UsageError(
            f"{label_file}: label {int(labels.max())} is out of range (expected 0 to {classes - 1}; "
            f"{int(wrong.sum()):,} of {labels.shape[0]:,} labels are)"
        )


def _download(dataset: str) -> None:
    import socket

    from torchvision import datasets  # only needed when the files are missing

    cls = getattr(datasets, TORCHVISION_NAMES[dataset])
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)  # fail within seconds offline instead of hanging
    try:
        cls(root=str(cache_dir()), train=True, download=True)
    except Exception:  # torchvision raises several kinds for a failed fetch
        hint = "; or install it: apt-get install dataset-fashion-mnist" if dataset == "fashion-mnist" else ""
        other = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}[dataset]
        if data_status(other) == "ready":
            hint += f"; {other} is on this machine: --dataset {other}"
        raise DataUnavailable(
            f"{dataset} is not on this machine and could not be downloaded (offline?); connect to the internet, "
            f"or pass --data-dir DIR holding {IDX_FILES['train_images']}[.gz] and the other three IDX files"
            f"{hint}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _images(cfg: DataConfig, seed: int) -> Dataset:
    ensure_available(cfg)
    files = find_idx_files(cfg.dataset, cfg.data_dir)
    if files is None:
        raise DataUnavailable(f"{cfg.dataset} download finished but the files are missing in {cache_dir()}")
    parts = {key: read_idx(path) for key, path in files.items()}
    classes = len(CLASS_NAMES[cfg.dataset])
    for split in ("train", "test"):
        _check_idx_pair(parts[f"{split}_images"], parts[f"{split}_labels"], files, split, classes)
    n = parts["train_images"].shape[0]
    n_valid = min(n, max(1, round(n * cfg.valid_fraction)))
    _check_splits(
        n - n_valid,
        n_valid,
        parts["test_images"].shape[0],
        cfg,
        f"{n:,} training images in {quote(files['train_images'])}",
        "use a bigger set of images",
    )
    # 1/255 scaling, as ToTensor does; stored as float once so no step converts anything
    train_x = parts["train_images"].unsqueeze(1).float().div_(255)
    test_x = parts["test_images"].unsqueeze(1).float().div_(255)
    train_y, test_y = parts["train_labels"].long(), parts["test_labels"].long()
    order = torch.randperm(train_x.shape[0], generator=torch.Generator().manual_seed(seed))
    valid, train = order[:n_valid], order[n_valid:]
    return Dataset(
        cfg.dataset,
        "classes",
        Split(train_x[train], train_y[train]),
        Split(train_x[valid], train_y[valid]),
        Split(test_x, test_y),
        classes,
        CLASS_NAMES[cfg.dataset],
        source=str(files["train_images"].parent),
    )


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
    if cfg.dataset == "csv":
        data = _csv(cfg, seed)
    else:
        data = _synthetic(cfg, seed) if cfg.dataset in SYNTHETIC else _images(cfg, seed)
    if cfg.standardize:
        _standardize(data)
    for split in (data.train, data.valid, data.test):
        split.x, split.y = split.x.to(device), split.y.to(device)
    return data
