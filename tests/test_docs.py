"""Every code block of README.md and docs/*.md runs, and prints what its page says.

The conventions (also on the page docs/about-docs.md):

- Each page runs in a fresh temporary directory, its blocks in order, so a
  file one block writes is there for the blocks after it.
- A ``python`` block runs on its own, in a fresh namespace, on the numpy
  backend; one whose first line is ``# continues`` runs in the namespace of
  the page's previous python block.
- In a ``bash`` block, every line that runs ``nnx`` (after ``VAR=value``
  settings, also under ``mpiexec``) or ``python examples/...`` runs; install
  lines and other commands (``pip``, ``python train.py``) are not, and a
  block with nothing to run is reported as skipped with that reason.
- A block whose first line (after ``# continues``) is ``# gpu: why`` needs
  CuPy and a CUDA GPU: it runs where CuPy can, and is skipped elsewhere with
  the reason. ``# slow: why`` marks a block that trains for long: it runs when
  the environment variable ``NNX_DOCS_SLOW=1`` is set, and is skipped with
  the reason otherwise. ``# needs: module ...`` marks a block that needs an
  optional extra: it runs where those modules import, and is skipped naming
  the missing ones elsewhere.
- A ``text`` block right after a code block (blank lines between at most)
  is what that block prints. A line ``...`` stands for any lines. Numbers
  agree within 1% relative or one unit of the last digit shown, whichever
  is larger; a duration (a number followed by ``s``) within a factor of 5
  (or half a second), since it depends on the machine and its BLAS threads. Other text agrees
  exactly.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import nnx

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?(\s?s\b)?")
_SETTING = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
SLOW = os.environ.get("NNX_DOCS_SLOW") == "1"


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    expected: str | None = None

    @property
    def marks(self) -> dict[str, str]:
        """The block's leading comment marks: ``continues``, ``gpu``, ``slow``, ``needs``."""
        found = {}
        for text in self.code.splitlines():
            m = re.match(r"#\s*(continues|gpu|slow|needs)\b:?\s*(.*)$", text.strip())
            if not m:
                break
            found[m.group(1)] = m.group(2)
        return found

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's python and bash blocks, each with the text block that shows its output."""
    text = page.read_text()
    found: list[Block] = []
    previous_end, previous = -1, None
    for m in _FENCE.finditer(text):
        lang, line = m.group(1), text[:m.start()].count("\n") + 1
        if lang == "text" and previous is not None and not text[previous_end:m.start()].strip():
            previous.expected = m.group(2)
        previous = None
        if lang in ("python", "bash"):
            previous = Block(page, line, lang, m.group(2))
            found.append(previous)
        previous_end = m.end()
    return found


def commands(block: Block) -> list[list[str]]:
    """The lines of a bash block that run: ``nnx ...`` (also under ``mpiexec``) and ``python examples/...``."""
    runs = []
    for text in block.code.replace("&&", "\n").splitlines():
        words = shlex.split(text, comments=True)
        while words and _SETTING.match(words[0]):
            words = words[1:]
        launcher = []
        if words[:1] == ["mpiexec"] and "nnx" in words:  # mpiexec -n N nnx ...: the launcher of the venv's MPI
            at = words.index("nnx")
            launcher, words = [shutil.which("mpiexec") or "mpiexec", *words[1:at]], words[at:]
        if words[:1] == ["nnx"]:
            runs.append([*launcher, sys.executable, "-m", "nnx", *words[1:]])
        elif words[:1] == ["python"] and len(words) > 1 and words[1].startswith("examples/"):
            runs.append([sys.executable, str(ROOT / words[1]), *words[2:]])
    return runs


def _numbers(line: str) -> list[tuple[float, int, bool]]:
    """Each number of a line: its value, its decimals, and whether it is a duration."""
    out = []
    for m in _NUMBER.finditer(line):
        digits = m.group(0).rstrip("s").strip().replace(",", "")
        decimals = len(digits.split(".")[1].split("e")[0]) if "." in digits else 0
        out.append((float(digits), decimals, m.group(1) is not None))
    return out


def _line_matches(expected: str, actual: str) -> bool:
    if _NUMBER.sub("#", expected).rstrip() != _NUMBER.sub("#", actual).rstrip():
        return False
    for (want, decimals, duration), (got, _, _) in zip(_numbers(expected), _numbers(actual)):
        if duration:
            if not (want / 5 - 0.5 <= got <= max(want * 5, want + 0.5)):
                return False
        elif abs(got - want) > max(0.01 * abs(want), 10.0 ** -decimals) * (1 + 1e-9):
            return False
    return True


def output_matches(expected: str, actual: str) -> bool:
    """``expected`` (with ``...`` for any lines) against what the block printed."""
    want = [line for line in expected.splitlines() if line.strip()]
    got = [line for line in actual.splitlines() if line.strip()]

    def match(i: int, j: int) -> bool:
        if i == len(want):
            return j == len(got)
        if want[i].strip() == "...":
            return any(match(i + 1, k) for k in range(j, len(got) + 1))
        return j < len(got) and _line_matches(want[i], got[j]) and match(i + 1, j + 1)

    return match(0, 0)


@dataclass
class PageRun:
    """One page's blocks run in order in one directory; each block's outcome is kept."""

    folder: Path
    done: dict[int, str] = field(default_factory=dict)
    namespace: dict[str, object] = field(default_factory=dict)


_RUNS: dict[Path, PageRun] = {}


def _skip_reason(block: Block) -> str | None:
    marks = block.marks
    if "gpu" in marks and nnx.available().get("cupy") is not None:
        return f"{block.name} needs a CUDA GPU ({marks['gpu'] or 'cupy'}): {nnx.available()['cupy']}"
    missing = [name for name in marks.get("needs", "").split() if importlib.util.find_spec(name) is None]
    if missing:
        return f"{block.name} needs {', '.join(missing)}, which is not installed (an optional extra)"
    if "slow" in marks and not SLOW:
        return f"{block.name} is slow ({marks['slow']}); NNX_DOCS_SLOW=1 runs it"
    if block.lang == "bash" and not commands(block):
        return f"{block.name} has no nnx command to run (install lines or other commands)"
    return None


def _run_python(block: Block, run: PageRun) -> str:
    if "continues" not in block.marks:
        run.namespace = {"__name__": "__docs__"}
    printed = io.StringIO()
    cwd = Path.cwd()
    os.chdir(run.folder)
    try:
        with nnx.use("numpy"), contextlib.redirect_stdout(printed):
            exec(compile(block.code, block.name, "exec"), run.namespace)
    finally:
        os.chdir(cwd)
        nnx.layers.registry._LAYERS.pop("Swish", None)  # the layer docs/layers.md registers
    return printed.getvalue()


def _run_bash(block: Block, run: PageRun) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "NNX_BACKEND": "numpy", "OPENBLAS_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    printed = []
    for argv in commands(block):
        result = subprocess.run(argv, cwd=run.folder, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{block.name}: {shlex.join(argv)} exits {result.returncode}\n{result.stderr}"
        printed.append(result.stdout)
    return "".join(printed)


def _outcome(block: Block, run: PageRun, before: str | None) -> str:
    """Run one block: ``ok``, ``skip:why`` or ``fail:why``; ``before`` is the outcome of the python
    block a ``# continues`` block continues."""
    reason = _skip_reason(block)
    if reason is None and "continues" in block.marks and before != "ok":
        reason = f"{block.name} continues a block that did not run ({(before or 'none')[5:]})"
        if before is not None and before.startswith("fail:"):
            return "fail:" + reason
    if reason is not None:
        return "skip:" + reason
    try:
        printed = (_run_python if block.lang == "python" else _run_bash)(block, run)
    except Exception as exc:  # noqa: BLE001 - the block's failure is the test's message
        return f"fail:{block.name} fails: {exc!r}"
    if block.expected is not None and not output_matches(block.expected, printed):
        return f"fail:{block.name} prints\n{printed}\nwhere the page shows\n{block.expected}"
    return "ok"


def run_block(block: Block, tmp_root: Path) -> None:
    """Run the page's blocks up to this one (each once, in order), then judge this one."""
    run = _RUNS.setdefault(block.page, PageRun(tmp_root / block.page.stem))
    run.folder.mkdir(parents=True, exist_ok=True)
    last_python = None
    for earlier in blocks(block.page):
        if earlier.line not in run.done:
            run.done[earlier.line] = _outcome(earlier, run, last_python)
        if earlier.lang == "python":
            last_python = run.done[earlier.line]
        if earlier.line == block.line:
            break
    outcome = run.done[block.line]
    if outcome.startswith("skip:"):
        pytest.skip(outcome[5:])
    assert outcome == "ok", outcome[5:]


ALL = [block for page in PAGES for block in blocks(page)]


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs")


@pytest.mark.parametrize("block", ALL, ids=[b.name for b in ALL])
def test_block_runs_and_prints_what_the_page_shows(block: Block, tmp_root: Path) -> None:
    run_block(block, tmp_root)


def test_every_block_is_found() -> None:
    """Fences the parser would miss (indented, or of another language that runs) are not allowed."""
    for page in PAGES:
        text = page.read_text()
        for other in ("sh", "shell", "console", "py", "python3"):
            assert f"```{other}\n" not in text, f"{page}: use ```bash or ```python, not ```{other}"
        assert not re.search(r"^[ \t]+```(python|bash)", text, re.M), f"{page}: an indented code fence"


def test_a_continued_block_has_a_block_to_continue() -> None:
    for page in PAGES:
        python = [b for b in blocks(page) if b.lang == "python"]
        if python:
            assert "continues" not in python[0].marks, f"{python[0].name}: nothing before it to continue"


def test_output_comparison_catches_a_changed_number() -> None:
    shown = "held-out accuracy: 97.77% (351/359), loss 0.1086; trained in 1.3 s"
    assert output_matches(shown, "held-out accuracy: 97.80% (351/359), loss 0.1087; trained in 3.9 s")
    assert not output_matches(shown, "held-out accuracy: 95.00% (341/359), loss 0.1086; trained in 1.3 s")
    assert not output_matches(shown, "held-out accuracy: 97.77% (351/359), loss 0.1086; trained in 9.1 s")
    assert not output_matches(shown, "held-out error: 97.77% (351/359), loss 0.1086; trained in 1.3 s")
    assert output_matches("a\n...\nz", "a\nb\nc\nz") and not output_matches("a\n...\nz", "a\nb")
    assert not math.isnan(_numbers("1,438 rows")[0][0]) and _numbers("1,438 rows")[0][0] == 1438


def _results_named(text: str) -> list[Path]:
    """The benchmark result files a page names: by full name, or as ``*-suffix.md`` beside them."""
    results = ROOT / "benchmarks" / "results"
    files = [results / name for name in re.findall(r"benchmarks/results/([\w.-]+\.md)", text)]
    for pattern in re.findall(r"`(\*[\w.-]+\.md)`", text):
        files += sorted(results.glob(pattern))
    return files


_UNIT = re.compile(r"(?<=\d)\s?(?:ms|µs|MiB|KiB|GiB|s|x)\b")


def _measured_cell(cell: str) -> bool:
    """A table cell that holds only measurements (numbers with units), not words that mention a number."""
    return bool(re.search(r"\d", cell)) and re.fullmatch(r"[\d.,/ +\-e()*%]*", _UNIT.sub("", cell).strip()) is not None


_MEASURE = re.compile(r"\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _recorded(number: str, values: list[float]) -> bool:
    """``number`` as the page writes it is one of ``values`` rounded to the digits shown."""
    mantissa, _, exponent = number.replace(",", "").partition("e")
    half = 0.5 * 10.0 ** (int(exponent or 0) - (len(mantissa.split(".")[1]) if "." in mantissa else 0))
    return any(abs(v - float(number.replace(",", ""))) <= half * (1 + 1e-9) for v in values)


@pytest.mark.parametrize("page", [p for p in PAGES if _results_named(p.read_text())], ids=lambda p: p.name)
def test_benchmark_numbers_come_from_the_results_files_the_page_names(page: Path) -> None:
    """Measured speed is not rerun by a test: each number of a table's measurements, and each decimal
    number of the text, is in a results file the page names (to the digits the page shows)."""
    text = page.read_text()
    files = _results_named(text)
    missing = [f.name for f in files if not f.exists()]
    assert not missing, f"{page.name} names results files that do not exist: {missing}"
    recorded = " ".join(f.read_text() + (f.with_suffix(".json").read_text() if f.with_suffix(".json").exists() else "")
                        for f in files)
    values = [float(n.replace(",", "")) for n in _MEASURE.findall(recorded)]
    unknown = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            for cell in line.strip("|").split("|")[1:]:
                if _measured_cell(cell):
                    unknown += [n for n in _MEASURE.findall(cell) if not _recorded(n, values)]
    prose = re.sub(r"`[^`]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
    unknown += [n for n in re.findall(r"\d+\.\d+(?:e[-+]?\d+)?", prose) if not _recorded(n, values)]
    assert not unknown, f"{page.name}: numbers in none of {[f.name for f in files]}: {unknown}"


def _prose(page: Path) -> str:
    return re.sub(r"```.*?```", "", page.read_text(), flags=re.S)


def test_every_documented_error_is_an_nnx_error() -> None:
    """Each error class a page names is in nnx.errors, and what a page says nnx raises is one of them."""
    import builtins

    named, raised = set(), []
    for page in PAGES:
        text = _prose(page)
        named |= {(page.name, n) for n in re.findall(r"`(?:nnx\.errors\.|nnx\.)?(\w+Error)`", text)}
        raised += [(page.name, n) for n in re.findall(
            r"\braises?\s+(?:an?\s+|the\s+)?`?(?:nnx\.errors\.|nnx\.)?(\w+Error)\b", text)]
    assert len(raised) >= 8, raised
    for page, name in raised:
        assert hasattr(nnx.errors, name) and issubclass(getattr(nnx.errors, name), nnx.errors.NnxError), (
            f"{page} says nnx raises {name}, which is not an nnx.errors class")
    for page, name in named:
        if not hasattr(builtins, name) and not hasattr(nnx.losses, name):  # SumSquaredError is a loss
            assert issubclass(getattr(nnx.errors, name, type(None)), nnx.errors.NnxError), (
                f"{page} names {name}, which is not an nnx.errors class")


def test_the_errors_the_pages_promise_are_raised() -> None:
    opt = nnx.SGD(nnx.Linear(2, 2, seed=0).parameters(), lr=0.1)
    with pytest.raises(nnx.errors.ConfigError, match="warmup_steps < total_steps"):
        nnx.schedules.CosineWithWarmup(opt, 5, 5)
    with pytest.raises(nnx.errors.ConfigError, match="min_lr"):
        nnx.schedules.CosineWithWarmup(opt, 1, 5, min_lr=1.0)
    with pytest.raises(nnx.errors.ConfigError, match="no reduced-precision matmul"):
        nnx.backend.set_matmul_precision("tf32", "numpy")
    with pytest.raises(nnx.errors.ConfigError, match="matmul precision must be one of"):
        nnx.backend.set_matmul_precision("fast", "numpy")


def test_the_synopsis_lists_only_real_options() -> None:
    page = (ROOT / "docs" / "command.md").read_text()
    synopsis = page[page.index("```text\nnnx train DATASET"):].split("```")[1]
    command = None
    for text in synopsis.splitlines():
        if text.startswith("nnx "):
            command = text.split()[1]
            help_text = subprocess.run([sys.executable, "-m", "nnx", command, "--help"], capture_output=True,
                                       text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
        for option in re.findall(r"--[a-z][a-z-]*", text):
            assert option in help_text, f"`nnx {command}` has no option {option}"


def test_a_recorded_number_is_matched_to_its_digits_only() -> None:
    assert _recorded("7208", [7207.9]) and _recorded("2.97e-06", [2.9714e-06]) and _recorded("1,797", [1797.0])
    assert not _recorded("6.5", [16.5, 6.6]) and not _recorded("2.97", [2.97e-06])
    assert _measured_cell(" 1.24x, 1.30x ") and _measured_cell("5.9 / 24.5 MiB") and _measured_cell("**8.0x**")
    assert not _measured_cell("raw data may exceed float16's 65504") and not _measured_cell("W1: 784-200-10")
