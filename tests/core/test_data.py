import gzip
import struct

import numpy as np
import pytest

from blacksat.data import ConfigError, load_dataset, load_digits, load_iris, load_mnist, read_idx


def test_digits_split_is_seeded_stratified_and_scaled():
    a, b, c = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.y_train, c.y_train)
    assert a.n_classes == 10 and a.image_shape == (8, 8) and a.n_features == 64
    assert len(a.y_train) + len(a.y_test) == 1797
    assert a.x_train.min() >= 0 and a.x_train.max() == 1.0
    counts = np.bincount(a.y_test) / len(a.y_test)
    assert np.all(np.abs(counts - 0.1) < 0.02)  # stratified


def test_iris_scaled_with_train_statistics_only():
    d = load_iris(seed=3)
    assert d.n_classes == 3 and d.n_features == 4
    np.testing.assert_allclose(d.x_train.min(axis=0), 0)
    np.testing.assert_allclose(d.x_train.max(axis=0), 1)
    assert d.x_test.min() >= 0 and d.x_test.max() <= 1


def _write_idx(path, arr, gz=False):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    x_tr = rng.integers(0, 256, (20, 6, 5), dtype=np.uint8)
    y_tr = (np.arange(20) % 10).astype(np.uint8)
    x_te = rng.integers(0, 256, (7, 6, 5), dtype=np.uint8)
    y_te = (np.arange(7) % 10).astype(np.uint8)
    sfx = ".gz" if gz else ""
    for name, arr in [
        ("train-images-idx3-ubyte", x_tr),
        ("train-labels-idx1-ubyte", y_tr),
        ("t10k-images-idx3-ubyte", x_te),
        ("t10k-labels-idx1-ubyte", y_te),
    ]:
        _write_idx(tmp_path / (name + sfx), arr, gz=gz)
    d = load_mnist(tmp_path, limit_train=15)
    assert d.image_shape == (6, 5) and len(d.y_train) == 15 and len(d.y_test) == 7
    np.testing.assert_allclose(d.x_test[3] * x_tr.max(), x_te[3].ravel())
    np.testing.assert_array_equal(d.y_test, y_te)
    assert load_dataset(str(tmp_path)).n_features == 30


def test_mnist_npz(tmp_path):
    rng = np.random.default_rng(1)
    arrays = dict(
        x_train=rng.integers(0, 256, (10, 4, 4)),
        y_train=np.arange(10) % 3,
        x_test=rng.integers(0, 256, (5, 4, 4)),
        y_test=np.arange(5) % 3,
    )
    np.savez(tmp_path / "m.npz", **arrays)
    d = load_mnist(tmp_path / "m.npz")
    assert d.n_classes == 3 and d.x_train.shape == (10, 16)
    np.savez(tmp_path / "bad.npz", x_train=arrays["x_train"])
    with pytest.raises(ConfigError, match="lacks"):
        load_mnist(tmp_path / "bad.npz")


def test_bad_idx_files_give_clear_errors(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ConfigError, match="magic"):
        read_idx(tmp_path / "junk")
    arr = np.zeros((4, 3, 3), dtype=np.uint8)
    _write_idx(tmp_path / "trunc", arr)
    (tmp_path / "trunc").write_bytes((tmp_path / "trunc").read_bytes()[:-5])
    with pytest.raises(ConfigError, match="truncated"):
        read_idx(tmp_path / "trunc")
    with pytest.raises(ConfigError, match="not found"):
        read_idx(tmp_path / "missing")
    with pytest.raises(ConfigError, match="no file"):
        load_mnist(tmp_path)
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("cifar")
    with pytest.raises(ConfigError, match="test_size"):
        load_digits(test_size=1.5)


def test_28x28_mnist_files_feed_devices_of_the_papers_sizes(tmp_path):
    """MNIST-format files (written here) -> the default task of each device at the paper's size:
    the front end is sized to the device, and a chip reads every test image."""
    import torch

    from blacksat.devices import DiffractiveNetwork, MRRWeightBank, MZIMesh
    from blacksat.devices.tasks import default_task

    rng = np.random.default_rng(2)
    y_tr, y_te = (np.arange(40) % 10).astype(np.uint8), (np.arange(12) % 10).astype(np.uint8)
    x_tr = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    x_te = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    for name, arr in [
        ("train-images-idx3-ubyte", x_tr),
        ("train-labels-idx1-ubyte", y_tr),
        ("t10k-images-idx3-ubyte", x_te),
        ("t10k-labels-idx1-ubyte", y_te),
    ]:
        _write_idx(tmp_path / name, arr)
    data = load_mnist(tmp_path)
    assert data.n_features == 784 and data.image_shape == (28, 28)
    chips = [
        MZIMesh(n_modes=64, noise=0.0, drift=0.0),
        MRRWeightBank(layer_sizes=(120, 84, 10), noise=0.0, drift=0.0),
        DiffractiveNetwork(n=64, noise=0.0, drift=0.0),
    ]
    for chip in chips:
        task = default_task(chip, data)
        x = task.encode(torch.as_tensor(data.x_test, dtype=task.dtype))
        assert tuple(x.shape) == (12, *chip.input_shape)
        acc = task.accuracy(chip, chip.initial_controls())
        assert 0.0 <= acc <= 1.0
