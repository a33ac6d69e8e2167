"""Outputs never destroy inputs: the one check of output paths, atomic writes and checkpoint locks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import nnx
from nnx import io as nio
from nnx.errors import CheckpointInUseError, OutputPathError


def test_an_output_may_be_no_spelling_of_an_input(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    data.write_text("1,2,0\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.csv").symlink_to(data)
    os.link(data, tmp_path / "hard.csv")
    for spelling in (data, tmp_path / "sub" / ".." / "d.csv", tmp_path / "link.csv", tmp_path / "hard.csv"):
        with pytest.raises(OutputPathError, match="is also an input of this command"):
            nio.check_output(spelling, inputs=[data], what="--out")
    with pytest.raises(OutputPathError, match="is also another output"):
        nio.check_output(tmp_path / "x.png", outputs=[tmp_path / "sub" / ".." / "x.png"])
    assert nio.check_output(tmp_path / "new.csv", inputs=[data]) == tmp_path / "new.csv"
    assert nio.check_output(data) == data  # a regular file that nothing reads may be replaced


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "missing folder", "empty"])
def test_an_output_is_a_regular_file_or_a_new_name(tmp_path: Path, kind: str) -> None:
    path = {"directory": tmp_path, "fifo": tmp_path / "fifo", "device": Path(os.devnull),
            "missing folder": tmp_path / "nope" / "m.nnx", "empty": ""}[kind]
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("this system has no FIFOs")
        os.mkfifo(path)
    before = os.stat(os.devnull)
    with pytest.raises(OutputPathError):
        nio.check_output(path)
    with pytest.raises(OutputPathError):
        nio.atomic_write(path, [b"data"])  # the writer itself asks the same question
    after = os.stat(os.devnull)
    assert (before.st_mode, before.st_rdev) == (after.st_mode, after.st_rdev)
    if kind == "fifo":
        assert os.listdir(tmp_path) == ["fifo"]


def test_a_name_near_the_length_limit_saves(tmp_path: Path) -> None:
    name = "m" * 236 + ".nnx"  # 240 bytes: a temporary name that repeated it whole would pass 255
    path = nnx.save(nnx.Linear(2, 1, seed=0), tmp_path / name)
    assert repr(nnx.load(path)) == "Linear(2, 1)"
    assert os.listdir(tmp_path) == [name]
    long_utf8 = "é" * 119 + ".nnx"  # 242 bytes; a temporary prefix cut inside a character must not break it
    nnx.save(nnx.Linear(2, 1, seed=0), tmp_path / long_utf8)
    assert sorted(os.listdir(tmp_path)) == sorted([name, long_utf8])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigterm_during_a_save_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "m.nnx"
    path.write_bytes(b"the previous model")
    script = textwrap.dedent(f"""
        import os, signal
        from nnx import io

        def chunks():
            yield b"half of a new model"
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` while the file is being written
            yield b"the other half"

        io.atomic_write({str(path)!r}, chunks())
        print("not reached")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == -signal.SIGTERM, result.stderr  # it still ends as SIGTERM says
    assert "not reached" not in result.stdout and "Traceback" not in result.stderr
    assert path.read_bytes() == b"the previous model"
    assert os.listdir(tmp_path) == ["m.nnx"]


_HOLDER = """
import sys
from nnx import checkpoint
with checkpoint.claim_directory(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(directory: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(directory)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


@pytest.mark.skipif(nnx.checkpoint.fcntl is None, reason="no advisory file locks on this system")
def test_a_checkpoint_directory_holds_one_run(tmp_path: Path) -> None:
    model = nnx.Linear(2, 1, seed=0, dtype="float64")
    data = (np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]), np.array([[1.0], [1.0], [2.0], [0.0]]))
    holder = _hold(tmp_path)
    try:
        with pytest.raises(CheckpointInUseError, match=f"in use by another run \\(process {holder.pid}\\)"):
            nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), data, epochs=1, progress=False,
                    checkpoint=tmp_path)
        assert not (tmp_path / nnx.checkpoint.CHECKPOINT_NAME).exists()  # refused before the first epoch
    finally:
        holder.communicate("")
    # the holder ended: its lock went with it, and the directory is free again
    nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), data, epochs=1, progress=False,
            checkpoint=tmp_path)
    assert nnx.load_checkpoint(tmp_path / nnx.checkpoint.CHECKPOINT_NAME).epoch == 1
    with nnx.checkpoint.claim_directory(tmp_path):  # a stale lock file of a dead run is no obstacle
        pass


def test_an_unusable_checkpoint_directory_is_refused_before_the_first_epoch(tmp_path: Path) -> None:
    regular = tmp_path / "file"
    regular.write_text("x")
    model = nnx.Linear(2, 1, seed=0, dtype="float64")
    calls = []
    data = (np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[1.0], [1.0]]))
    for directory, phrase in ((regular, "is a file"), (regular / "sub", "cannot be made")):
        with pytest.raises(OutputPathError, match=phrase):
            nnx.fit(model, nnx.MSE(), nnx.SGD(model.parameters(), lr=0.1), data, epochs=1, progress=False,
                    checkpoint=directory, callbacks=[_Record(calls)])
    assert calls == []


class _Record(nnx.Callback):
    def __init__(self, calls: list[int]) -> None:
        self.calls = calls

    def on_epoch_begin(self, state: object) -> None:
        self.calls.append(1)
