"""Strict CSV reading: the header rule, byte-order marks, finite cells, class labels."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import datasets
from nnx.errors import DataFormatError


def _load(tmp_path: Path, text: str | bytes, **kwargs: object) -> datasets.Dataset:
    f = tmp_path / "d.csv"
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return datasets.load_csv(f, **kwargs)


@pytest.mark.parametrize("first, is_header", [
    ("a,b,label", True),             # names
    ("0,1,2", True),                 # the column positions, from 0
    ("1,2,3", True),                 # the column positions, from 1
    ("0,1,label", False),            # two positions are too few for the rule: a data row with a word
    ("x1,2,label", False),           # a number that is not its position: data
    ("a,,label", False),             # an empty cell: data (and then an error)
    ("5,6,1", False),                # numbers: data
])
def test_the_header_rule(first: str, is_header: bool) -> None:
    assert datasets._looks_like_header(first.split(",")) is is_header


def test_header_rule_and_its_overrides(tmp_path: Path) -> None:
    text = "0,1,2\n5,6,1\n7,8,0\n"
    assert len(_load(tmp_path, text)) == 2
    assert len(_load(tmp_path, text, header=False)) == 3
    named = _load(tmp_path, "5,6,1\n7,8,0\n", header=True)
    assert len(named) == 1 and named.columns == ["5", "6", "1"]


def test_a_byte_order_mark_is_not_a_header(tmp_path: Path) -> None:
    ds = _load(tmp_path, b"\xef\xbb\xbf0.5,2,1\n1.5,4,0\n")
    np.testing.assert_array_equal(ds.x, [[0.5, 2], [1.5, 4]])
    named = _load(tmp_path, b"\xef\xbb\xbfa,b,y\n0.5,2,1\n")
    assert named.columns == ["a", "b", "y"]


def test_gzip_and_quoted_cells(tmp_path: Path) -> None:
    f = tmp_path / "d.csv.gz"
    f.write_bytes(gzip.compress(b'"width, cm",height,"kind"\n1.5,2,"a b"\n2.5,3,c\n'))
    ds = datasets.load_csv(f, label_column="kind")
    assert ds.columns == ["width, cm", "height", "kind"] and ds.labels == ["a b", "c"]
    np.testing.assert_array_equal(ds.x, [[1.5, 2], [2.5, 3]])


@pytest.mark.parametrize("text, where, what", [
    ("1,,0\n2,3,1\n", "line 1, column 2", "an empty cell is not a number"),
    ("a,b,y\n1,2,0\n3,1e400,1\n", "line 3, column 2 ('b')", "'1e400' is not a finite number"),
    ("1,2,0\n\n3,inf,1\n", "line 3, column 2", "'inf' is not a finite number"),
    ("1,2,0\n3,nan,1\n", "line 2, column 2", "'nan' is not a finite number"),
    ("1,2,0\n3,4x,1\n", "line 2, column 2", "'4x' is not a number"),
    ("1,2,0\n3,4,2.5\n", "line 2, column 3", "the label '2.5' is not a whole number"),
    ("1,2,0\n3,4,nan\n", "line 2, column 3", "the label 'nan' is not a whole number"),
    ("1,2,0\n3,4,\n", "line 2, column 3", "the label is empty"),
    ("1,2,0\n3,4\n", "line 2 has 2 columns", "line 1 has 3"),
])
def test_bad_cells_are_named_by_line_and_column(tmp_path: Path, text: str, where: str, what: str) -> None:
    with pytest.raises(DataFormatError) as info:
        _load(tmp_path, text)
    message = str(info.value)
    assert where in message and what in message and str(tmp_path / "d.csv") in message


@pytest.mark.parametrize("text, problem", [
    ("", "no data rows"),
    ("\n  \n", "no data rows"),
    ("a,b,y\n", "only a header"),
    ("1\n2\n", "at least one input column"),
    (b"\xff\xfe1,2\n", "not UTF-8"),
])
def test_files_without_data(tmp_path: Path, text: str | bytes, problem: str) -> None:
    with pytest.raises(DataFormatError, match=problem):
        _load(tmp_path, text)


def test_label_columns_by_index_and_name(tmp_path: Path) -> None:
    text = "y,a,b\n1,0.5,2\n0,1.5,4\n"
    assert _load(tmp_path, text, label_column=0).y.tolist() == [1, 0]
    assert _load(tmp_path, text, label_column=-3).y.tolist() == [1, 0]
    with pytest.raises(DataFormatError, match="no column named 'label'; the header has 'y', 'a', 'b'"):
        _load(tmp_path, text, label_column="label")
    with pytest.raises(DataFormatError, match="label column 3 is outside the 3 columns"):
        _load(tmp_path, text, label_column=3)
    with pytest.raises(DataFormatError, match="is a name, but the file has no header"):
        _load(tmp_path, "1,2,0\n", label_column="y")


def test_labels_become_classes_in_sorted_order(tmp_path: Path) -> None:
    starting_at_one = _load(tmp_path, "0.1,1\n0.2,3\n0.3,2\n0.4,3\n")
    assert starting_at_one.labels == [1, 2, 3] and starting_at_one.classes == 3
    assert starting_at_one.y.tolist() == [0, 2, 1, 2]
    names = _load(tmp_path, "x,kind\n0.1,setosa\n0.2,virginica\n0.3,setosa\n")
    assert names.labels == ["setosa", "virginica"] and names.y.tolist() == [0, 1, 0]
    negative = _load(tmp_path, "0.1,-1\n0.2,1\n")
    assert negative.labels == [-1, 1] and negative.y.tolist() == [0, 1]


def test_the_bundled_sets_read_through_the_strict_reader() -> None:
    digits = nnx.datasets.load_digits(scale=False)
    assert digits.x.shape == (1797, 64) and np.bincount(digits.y).min() > 170
    assert float(digits.x.max()) == 16.0
