"""The README's code runs and its sample output is what the code prints.

Every ``python`` block runs, in order, in one namespace (the README builds on
its earlier blocks), in a temporary working directory; a block that needs a
GPU runs only where CuPy can (and is skipped with the reason elsewhere).
Every ``nnx`` command in a ``bash`` block runs too, the synopsis's options
must be ones the command accepts, and the quick start's sample output must
match what ``nnx train digits`` prints, timings aside.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nnx

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(lang: str) -> list[tuple[int, str]]:
    text = README.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(2)) for m in _FENCE.finditer(text) if m.group(1) == lang]


def _needs_cupy(code: str) -> bool:
    """A block that selects the cupy backend or calls an ``nnx.backend`` function on it."""
    return re.search(r'nnx\.backend\.\w+\([^)]*"cupy"\)|nnx\.use\("cupy"\)', code) is not None


def _flowers(folder: Path) -> None:
    """The README's ``flowers.csv``: a header, four measurements, the species as a string label."""
    rng = np.random.default_rng(0)
    rows = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for k, name in enumerate(["setosa", "versicolor", "virginica"]):
        for values in rng.normal(k, 0.5, (50, 4)) * [1.0, 10.0, 100.0, 0.1]:
            rows.append(",".join(f"{v:.3f}" for v in values) + f",{name}")
    (folder / "flowers.csv").write_text("\n".join(rows) + "\n")


def _houses(folder: Path) -> None:
    """The README's ``houses.csv``: a header, three inputs and a price to predict in the last column."""
    rng = np.random.default_rng(0)
    rows = ["area,rooms,distance,price"]
    for area, rooms, distance in zip(rng.uniform(40, 200, 100), rng.integers(1, 6, 100), rng.uniform(0, 9, 100)):
        price = 2000 * area + 15000 * rooms - 8000 * distance + rng.normal(0, 5000)
        rows.append(f"{area:.1f},{rooms},{distance:.2f},{price:.0f}")
    (folder / "houses.csv").write_text("\n".join(rows) + "\n")


def test_python_blocks_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    ran = 0
    try:
        with nnx.use("numpy"):
            for line, code in _blocks("python"):
                if _needs_cupy(code):
                    continue
                try:
                    exec(compile(code, f"README.md:{line}", "exec"), namespace)
                except Exception as exc:
                    raise AssertionError(f"the python block at README.md:{line} fails: {exc!r}") from exc
                ran += 1
    finally:
        nnx.layers.registry._LAYERS.pop("Swish", None)
    assert ran == len(_blocks("python")) - len([c for _, c in _blocks("python") if _needs_cupy(c)]) >= 14


@pytest.mark.parametrize("line", [line for line, code in _blocks("python") if _needs_cupy(code)])
def test_gpu_python_blocks_run_where_cupy_can(line: int) -> None:
    reason = nnx.available().get("cupy")
    if reason is not None:
        pytest.skip(f"the block at README.md:{line} needs CuPy: {reason}")
    code = dict(_blocks("python"))[line]
    exec(compile(code, f"README.md:{line}", "exec"), {"nnx": nnx})


def _commands() -> list[tuple[int, str]]:
    """The runnable ``nnx`` commands of the bash blocks (install lines are what CI itself runs)."""
    found = []
    for line, code in _blocks("bash"):
        for i, text in enumerate(code.splitlines()):
            command = text.split("&&")[-1].split("#")[0].strip()
            if command.startswith("nnx ") and "[" not in command and "DATASET" not in command:
                found.append((line + 1 + i, command))
    return found


@pytest.mark.parametrize("line, command", _commands(), ids=[f"README.md:{n}" for n, _ in _commands()])
def test_bash_commands_run(tmp_path: Path, line: int, command: str) -> None:
    args = shlex.split(command)
    if "cupy" in command and nnx.available().get("cupy") is not None:
        pytest.skip(f"README.md:{line} needs CuPy: {nnx.available()['cupy']}")
    _flowers(tmp_path)
    _houses(tmp_path)
    if args[1] in ("predict", "evaluate") and "houses.nnx" in args:
        subprocess.run([sys.executable, "-m", "nnx", "train", "houses.csv", "--task", "regression", "--quiet",
                        "--save", "houses.nnx"], cwd=tmp_path, check=True, capture_output=True)
    elif args[1] in ("predict", "evaluate"):
        subprocess.run([sys.executable, "-m", "nnx", "train", "flowers.csv", "--quiet", "--save", "flowers.nnx"],
                       cwd=tmp_path, check=True, capture_output=True)
    if "--against" in args:  # a replayed trace is the one the README records just before
        for _, record in _commands():
            if "--record" in record:
                subprocess.run([sys.executable, "-m", "nnx", *shlex.split(record)[1:]], cwd=tmp_path, check=True,
                               capture_output=True)
    result = subprocess.run([sys.executable, "-m", "nnx", *args[1:]], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, f"README.md:{line}: {command}\n{result.stderr}"


def test_the_synopsis_lists_only_real_options() -> None:
    synopsis = next(code for _, code in _blocks("bash") if "nnx train DATASET" in code)
    command = None
    for text in synopsis.splitlines():
        if text.startswith("nnx "):
            command = text.split()[1]
            help_text = subprocess.run([sys.executable, "-m", "nnx", command, "--help"], capture_output=True,
                                       text=True, check=True).stdout
        for option in re.findall(r"--[a-z][a-z-]*", text):
            assert option in help_text, f"`nnx {command}` has no option {option}"


def test_the_quick_start_output_is_what_the_command_prints() -> None:
    text = README.read_text()
    sample = text[text.index("```text\nnnx train digits"):].split("```")[1].splitlines()[1:]
    result = subprocess.run([sys.executable, "-m", "nnx", "train", "digits"], capture_output=True, text=True,
                            check=True)
    lines = result.stdout.splitlines()
    assert lines[:2] == sample[:2]

    def untimed(line: str) -> str:
        return re.sub(r"\s+[\d.]+s$|; trained in .*$", "", line)

    assert untimed(lines[2]) == untimed(sample[2])  # the first epoch
    assert untimed(lines[-2]) == untimed(sample[-2]) and untimed(lines[-1]) == untimed(sample[-1])
