"""Datasets for PNN tasks: scikit-learn's bundled digits (default) and iris, and MNIST-format files.

No download ever happens: ``load_digits`` and ``load_iris`` ship with scikit-learn, and
:func:`load_mnist` reads IDX files (optionally gzipped) or an ``.npz`` archive that the user
already has. Every split is seeded and stratified; features are scaled to ``[0, 1]`` using
statistics of the training split only.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from blacksat.errors import ConfigError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A classification dataset with a fixed train/test split.

    Attributes:
        name: short name.
        x_train: features ``(N_train, f)``, float64 in ``[0, 1]``.
        y_train: labels ``(N_train,)``, int64 in ``[0, n_classes)``.
        x_test: features ``(N_test, f)``.
        y_test: labels ``(N_test,)``.
        n_classes: number of classes.
        image_shape: ``(h, w)`` when the features are a flattened image, else ``None``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
                raise ConfigError(
                    f"{split} split needs x (N, f) and y (N,) with N > 0, got {x.shape}, {y.shape}"
                )
            if not np.all(np.isfinite(x)):
                raise ConfigError(f"{split} features hold NaN/inf")
            if y.min() < 0 or y.max() >= self.n_classes:
                raise ConfigError(f"{split} labels must lie in [0, {self.n_classes})")
        if self.x_train.shape[1] != self.x_test.shape[1]:
            raise ConfigError("train and test features differ in width")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.n_features:
            raise ConfigError(f"image_shape {self.image_shape} does not match {self.n_features}")

    @property
    def n_features(self) -> int:
        """Feature width ``f``."""
        return int(self.x_train.shape[1])

    def split(self, which: str) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of ``"train"`` or ``"test"``."""
        if which not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {which!r}")
        return getattr(self, f"x_{which}"), getattr(self, f"y_{which}")

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"features={self.n_features}, classes={self.n_classes})"
        )


def _split_and_scale(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    test_size: float,
    seed: int,
    image_shape: tuple[int, int] | None,
    per_feature: bool,
) -> Dataset:
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ConfigError(f"test_size must be in (0, 1), got {test_size!r}")
    x_tr, x_te, y_tr, y_te = train_test_split(
        x.astype(np.float64), y.astype(np.int64), test_size=test_size, random_state=seed, stratify=y
    )
    axis = 0 if per_feature else None
    lo, hi = x_tr.min(axis=axis), x_tr.max(axis=axis)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    scale = lambda a: np.clip((a - lo) / span, 0.0, 1.0)  # noqa: E731
    n_classes = int(max(y_tr.max(), y_te.max()) + 1)
    return Dataset(name, scale(x_tr), y_tr, scale(x_te), y_te, n_classes, image_shape)


def load_digits(*, test_size: float = 0.25, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes)."""
    from sklearn.datasets import load_digits as _load

    raw = _load()
    return _split_and_scale(
        "digits",
        raw.data,
        raw.target,
        test_size=test_size,
        seed=seed,
        image_shape=(8, 8),
        per_feature=False,
    )


def load_iris(*, test_size: float = 0.3, seed: int = 0) -> Dataset:
    """scikit-learn's bundled iris (150 samples, 4 features, 3 classes)."""
    from sklearn.datasets import load_iris as _load

    raw = _load()
    return _split_and_scale(
        "iris",
        raw.data,
        raw.target,
        test_size=test_size,
        seed=seed,
        image_shape=None,
        per_feature=True,
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (the MNIST format), gzipped or not.

    Raises:
        ConfigError: the file is missing, truncated, or not IDX.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"IDX file not found: {p}")
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ConfigError(f"{p} is not an IDX file (bad magic number)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ConfigError(f"{p} is truncated (header)")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[data[2]])  # type: ignore[call-overload]
    count = int(np.prod(shape)) if ndim else 0
    body = data[4 + 4 * ndim :]
    if len(body) < count * dtype.itemsize:
        raise ConfigError(f"{p} is truncated: expected {count} values of shape {shape}")
    return (
        np.frombuffer(body, dtype=dtype, count=count).reshape(shape).astype(dtype.newbyteorder("="))
    )


def _find(directory: Path, stem: str) -> Path:
    for cand in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (directory / cand).is_file():
            return directory / cand
    raise ConfigError(f"no file {stem}[.gz] in {directory}")


def load_mnist(
    path: str | Path,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    name: str = "mnist",
) -> Dataset:
    """MNIST-format data from the user's own files (nothing is downloaded).

    ``path`` is either a directory holding the four IDX files
    (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), or an ``.npz`` archive with arrays
    ``x_train``, ``y_train``, ``x_test``, ``y_test`` (the Keras ``mnist.npz`` layout). Pixel
    values are scaled to ``[0, 1]`` by the training maximum. The file's own split is kept;
    ``limit_*`` take the first ``n`` samples.
    """
    p = Path(path)
    if p.is_dir():
        x_tr = read_idx(_find(p, "train-images-idx3-ubyte"))
        y_tr = read_idx(_find(p, "train-labels-idx1-ubyte"))
        x_te = read_idx(_find(p, "t10k-images-idx3-ubyte"))
        y_te = read_idx(_find(p, "t10k-labels-idx1-ubyte"))
    elif p.is_file() and p.suffix == ".npz":
        with np.load(p) as z:
            missing = {"x_train", "y_train", "x_test", "y_test"} - set(z.files)
            if missing:
                raise ConfigError(f"{p} lacks arrays {sorted(missing)}")
            x_tr, y_tr, x_te, y_te = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    else:
        raise ConfigError(f"MNIST path must be a directory of IDX files or an .npz file: {p}")
    if x_tr.ndim != 3 or x_te.ndim != 3 or x_tr.shape[1:] != x_te.shape[1:]:
        raise ConfigError(f"MNIST images must be (N, h, w), got {x_tr.shape} and {x_te.shape}")
    x_tr, y_tr = x_tr[:limit_train], y_tr[:limit_train]
    x_te, y_te = x_te[:limit_test], y_te[:limit_test]
    h, w = x_tr.shape[1:]
    top = float(x_tr.max()) or 1.0
    flat = lambda a: np.clip(a.reshape(len(a), -1).astype(np.float64) / top, 0.0, 1.0)  # noqa: E731
    n_classes = int(max(y_tr.max(), y_te.max()) + 1)
    return Dataset(
        name,
        flat(x_tr),
        y_tr.astype(np.int64),
        flat(x_te),
        y_te.astype(np.int64),
        n_classes,
        (h, w),
    )


DATASETS: dict[str, Callable[..., Dataset]] = {"digits": load_digits, "iris": load_iris}


def load_dataset(name: str, **kwargs: object) -> Dataset:
    """A dataset by registry name (``"digits"``, ``"iris"``) or MNIST-format path."""
    if name in DATASETS:
        return DATASETS[name](**kwargs)
    if Path(name).exists():
        return load_mnist(name, **kwargs)  # type: ignore[arg-type]
    raise ConfigError(f"unknown dataset {name!r}: use one of {sorted(DATASETS)} or a path")


__all__ = [
    "DATASETS",
    "Dataset",
    "load_dataset",
    "load_digits",
    "load_iris",
    "load_mnist",
    "read_idx",
]
