"""Where nnx may write, and how: ``check_output`` (may this path be written?) and ``atomic_write``
(a temporary file in the same directory, flushed and fsynced, then renamed over the target),
which every writer of nnx files and the ``nnx`` command use.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import stat
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

from nnx.errors import OutputPathError


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# Bytes of the target's name that its temporary file's name repeats: a name near the file system's
# 255-byte limit still leaves room for the pid, the random part and the suffix.
_TEMP_PREFIX_BYTES = 48


def _temp_prefix(path: Path) -> str:
    """The start of the names of ``path``'s temporary files: a dot and at most 48 bytes of its name."""
    return "." + path.name.encode("utf-8", "surrogateescape")[:_TEMP_PREFIX_BYTES].decode("utf-8", "ignore") + "."


def _remove_stale_temps(path: Path) -> None:
    """Delete temporary files a killed writer of ``path`` (or of a name that starts alike) left behind."""
    prefix = _temp_prefix(path)
    try:
        names = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        try:
            pid = int(name[len(prefix):].split(".")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(path.parent / name)
        except (ValueError, OSError):
            continue


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file: the same resolved path, or the same inode (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    outputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "the output",
) -> Path:
    """Decide whether ``path`` may be written; return it, or raise :class:`~nnx.errors.OutputPathError`.

    Every nnx writer asks this before it writes (:func:`atomic_write` itself,
    and the ``nnx`` command for all its outputs before any work). A path may be
    written when it is a regular file or a new name in an existing, writable
    folder; never a directory, a device, a FIFO or a socket (replacing
    ``/dev/null`` with a file is no way to write to it). ``inputs`` are the
    files the same command reads and ``outputs`` the other files it writes:
    ``path`` may be none of them, compared after resolving symbolic links and
    ``..`` and by inode, so a second name of an input is caught too.
    """
    target = Path(path)
    if not str(path):
        raise OutputPathError(f"{what}: an empty path; give a file name such as model.nnx")
    for role, others in (("an input", inputs), ("another output", outputs)):
        for other in others:
            if other is not None and same_file(target, Path(other)):
                raise OutputPathError(
                    f"{what} {str(target)!r} is also {role} of this command ({str(other)!r}); writing it would "
                    f"destroy what the command reads or writes; give another file name")
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise OutputPathError(f"{what} {str(target)!r} cannot be examined: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise OutputPathError(f"{what} {str(target)!r} is a directory; give a file name inside it, "
                              f"such as model.nnx")
    if mode is not None and not stat.S_ISREG(mode):
        raise OutputPathError(f"{what} {str(target)!r} is not a regular file (a device, FIFO or socket); nnx "
                              f"writes only regular files, as replacing it would destroy it; give a file name")
    folder = target.parent
    if not folder.is_dir():
        raise OutputPathError(f"{what} {str(target)!r}: the folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputPathError(f"{what} {str(target)!r}: the folder {str(folder)!r} is not writable")
    return target


class _Terminated(BaseException):
    """SIGTERM arrived while a temporary file existed; raised so that it is removed, then the signal goes on."""


@contextlib.contextmanager
def _cleanup_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception while the block runs, so a temporary file is removed before the
    process ends as the signal says (only where SIGTERM has its default action, in the main thread)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def atomic_write(path: str | os.PathLike[str], chunks: Iterable[Any]) -> Path:
    """Write the byte chunks to ``path`` so that it holds either the old or the new content.

    The path must pass :func:`check_output`. The bytes go to a temporary file
    in the same directory (named with at most 48 bytes of the target's name, so
    long names fit), which is flushed, fsynced and renamed over ``path``
    (``os.replace``, atomic on POSIX and Windows); then the directory is fsynced
    so the rename survives a power cut. Overwriting keeps the old file's
    permission bits (a private 0600 model stays private; the temporary file is
    never more open than the target). A crash at any point leaves the previous
    file intact; an exception or SIGTERM during the write also removes the
    temporary file.
    """
    path = check_output(path)
    directory = path.parent
    _remove_stale_temps(path)
    tmp = directory / f"{_temp_prefix(path)}{os.getpid()}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)  # an overwrite keeps the target's permissions
    except OSError:
        keep_mode = None
    with _cleanup_on_sigterm():
        fd = os.open(tmp, flags, 0o644 if keep_mode is None else 0o600)
        try:
            if keep_mode is not None:
                os.chmod(tmp, keep_mode)
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    _fsync_dir(directory)
    return path


__all__ = ["atomic_write", "check_output", "same_file"]
