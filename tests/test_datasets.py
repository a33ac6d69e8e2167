"""Data loaders: the bundled digits, MNIST IDX bytes written here, CSV files, splits, one-hot."""

from __future__ import annotations

import gzip
import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import datasets


def _idx(array: np.ndarray, code: int) -> bytes:
    """IDX bytes as the MNIST page specifies: 0, 0, type code, ndim, big-endian u32 dims, big-endian data."""
    big = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(big).tobytes()


@pytest.fixture()
def mnist_files(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    a = tmp_path / "train-images-idx3-ubyte"
    b = tmp_path / "train-labels-idx1-ubyte"
    a.write_bytes(_idx(images, 0x08))
    b.write_bytes(_idx(labels, 0x08))
    return a, b, images, labels


def test_bundled_digits_are_the_real_ones() -> None:
    ds = datasets.load_digits()
    x, y = ds
    assert x.shape == (1797, 64) and x.dtype == np.float32
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert x.min() == 0.0 and x.max() == 1.0
    raw = datasets.load_digits(scale=False)
    # the first sample of the UCI set: a zero, its first row of pixels 0 0 5 13 9 1 0 0
    assert raw.x[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0] and raw.y[0] == 0
    assert ds.image_shape == (8, 8)


def test_bundled_mnist_subset() -> None:
    ds = datasets.load("mnist")
    assert ds.x.shape == (5000, 784) and ds.image_shape == (28, 28)
    assert np.bincount(ds.y).tolist() == [500] * 10
    assert datasets.load_mnist_5k(scale=False).x.max() == 255
    with pytest.raises(ValueError, match="bundled are: digits, mnist_5k"):
        datasets.load("cifar")


def test_idx_files_raw_and_gzipped(mnist_files: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path) -> None:
    a, b, images, labels = mnist_files
    ds = datasets.load_mnist_idx(a, b, scale=False)
    np.testing.assert_array_equal(ds.x, images.reshape(7, 20))
    np.testing.assert_array_equal(ds.y, labels)
    assert ds.image_shape == (5, 4)
    gz = tmp_path / "gz"
    gz.mkdir()
    for f in (a, b):
        (gz / (f.name + ".gz")).write_bytes(gzip.compress(f.read_bytes()))
    found = datasets.find_idx_pair(gz)
    scaled = datasets.load_mnist_idx(*found)
    np.testing.assert_allclose(scaled.x, images.reshape(7, 20) / 255.0, rtol=1e-6)
    assert datasets.find_idx_pair(a) == (a, b)


def test_idx_other_types_keep_values(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.25], [3.0, 1e-3]], dtype=np.float32)
    f = tmp_path / "floats.idx"
    f.write_bytes(_idx(values, 0x0D))
    np.testing.assert_array_equal(datasets.read_idx(f), values)
    shorts = np.array([-300, 7, 32000], dtype=np.int16)
    f.write_bytes(_idx(shorts, 0x0B))
    np.testing.assert_array_equal(datasets.read_idx(f), shorts)


@pytest.mark.parametrize("cut, message", [
    (2, "too short for an IDX header"),
    (10, "truncated IDX header"),
    (-1, "IDX file truncated"),
])
def test_truncated_idx_is_refused_naming_the_file(mnist_files: tuple, cut: int, message: str) -> None:
    a = mnist_files[0]
    raw = a.read_bytes()
    a.write_bytes(raw[:cut])
    with pytest.raises(nnx.errors.DataFormatError, match=message) as info:
        datasets.read_idx(a)
    assert str(a) in str(info.value)


def test_corrupt_idx_is_refused(mnist_files: tuple, tmp_path: Path) -> None:
    a, b = mnist_files[0], mnist_files[1]
    raw = a.read_bytes()
    a.write_bytes(b"\x00\x01" + raw[2:])
    with pytest.raises(nnx.errors.DataFormatError, match="not an IDX file: magic bytes 00010803"):
        datasets.read_idx(a)
    a.write_bytes(raw + b"\x00")
    with pytest.raises(nnx.errors.DataFormatError, match="longer than its header says"):
        datasets.read_idx(a)
    a.write_bytes(raw)
    b.write_bytes(_idx(np.arange(6, dtype=np.uint8), 0x08))
    with pytest.raises(nnx.errors.DataFormatError, match="has 7 images but .* has 6 labels"):
        datasets.load_mnist_idx(a, b)
    broken = tmp_path / "x.gz"
    broken.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(nnx.errors.DataFormatError, match="not a complete gzip file"):
        datasets.read_idx(broken)


def test_csv_with_header_and_label_column(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    f.write_text("label,a,b\n1,0.5,2\n0,1.5,4\n2,2.5,6\n")
    ds = datasets.load_csv(f, label_column=0)
    np.testing.assert_array_equal(ds.y, [1, 0, 2])
    np.testing.assert_array_equal(ds.x, [[0.5, 2], [1.5, 4], [2.5, 6]])
    assert ds.columns == ["label", "a", "b"] and ds.label_name == "label" and ds.labels == [0, 1, 2]
    np.testing.assert_array_equal(datasets.load_csv(f, label_column="label").y, ds.y)
    f.write_text("0.5,2,1\n1.5,4\n")
    with pytest.raises(nnx.errors.DataFormatError, match="line 2 has 2 columns, line 1 has 3"):
        datasets.load_csv(f)
    f.write_text("0.5,2,1.5\n0.5,2,1\n")
    with pytest.raises(nnx.errors.DataFormatError, match=r"line 1, column 3: the label '1.5' is not a whole number"):
        datasets.load_csv(f)
    f.write_text("0.5,x,1\n0.5,y,1\n")
    with pytest.raises(nnx.errors.DataFormatError, match=re.escape(f"{f}: line 1, column 2: 'x' is not a number")):
        datasets.load_csv(f)
def test_split_is_seeded_and_stratified() -> None:
    x, y = datasets.load_mnist_5k()
    (xt, yt), (xv, yv) = datasets.train_val_split(x, y, val=1000, seed=0, stratify=True)
    assert xt.shape == (4000, 784) and xv.shape == (1000, 784)
    assert np.bincount(yv).tolist() == [100] * 10
    (xt2, _), _ = datasets.train_val_split(x, y, val=1000, seed=0, stratify=True)
    np.testing.assert_array_equal(xt, xt2)
    all_rows = {r.tobytes() for r in np.concatenate([xt, xv])}
    assert len(all_rows) == len({r.tobytes() for r in x})
    (_, a), (_, b) = datasets.train_val_split(x, y, val=0.2, seed=1)
    assert len(b) == 1000 and a.size == 4000
    with pytest.raises(ValueError, match="fraction"):
        datasets.train_val_split(x, y, val=1.5)


def test_one_hot() -> None:
    t = datasets.one_hot(np.array([2, 0]), 3, on=0.99, off=0.01)
    np.testing.assert_allclose(t, [[0.01, 0.01, 0.99], [0.99, 0.01, 0.01]], rtol=1e-6)
    assert t.dtype == np.float32
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        datasets.one_hot(np.array([2]), 2)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_a_pipe_is_refused_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    with pytest.raises(nnx.errors.DataFormatError, match="not a regular file"):
        nnx.datasets.load_csv(fifo)


def test_a_stratified_split_holds_out_exactly_the_asked_count() -> None:
    y = np.repeat(np.arange(10), 12)  # 120 samples: 20% is 24, 2.4 per class
    x = np.arange(120)
    for val, count in ((0.2, 24), (0.3, 36), (7, 7), (0.5, 60)):
        (xt, yt), (xv, yv) = datasets.train_val_split(x, y, val=val, seed=3, stratify=True)
        assert len(yv) == count and len(yt) == 120 - count
        assert set(np.bincount(yv, minlength=10)) <= {count // 10, count // 10 + 1}
        assert sorted(np.concatenate([xt, xv]).tolist()) == list(range(120))


def test_the_bundled_tables_are_written_as_csv_files_nnx_reads(tmp_path: Path) -> None:
    iris = nnx.datasets.load_csv(nnx.datasets.write_csv("iris", tmp_path / "iris.csv"))
    assert iris.x.shape == (150, 4) and iris.labels == ["setosa", "versicolor", "virginica"]
    assert np.bincount(iris.y).tolist() == [50, 50, 50] and iris.columns[:4] == ["sepal_length", "sepal_width",
                                                                                 "petal_length", "petal_width"]
    assert np.allclose(iris.x[0], [5.1, 3.5, 1.4, 0.2])  # the first flower of Fisher's table
    diabetes = nnx.datasets.load_csv(nnx.datasets.write_csv("diabetes", tmp_path / "d.csv"), target="values")
    assert diabetes.x.shape == (442, 10) and diabetes.label_name == "progression"
    assert diabetes.y[:3].tolist() == [151.0, 75.0, 141.0] and diabetes.x[0, 0] == 59.0
    with pytest.raises(nnx.errors.ConfigError, match="bundled tables are: iris, diabetes"):
        nnx.datasets.write_csv("titanic", tmp_path / "t.csv")
