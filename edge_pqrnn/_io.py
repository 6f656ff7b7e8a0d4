"""Reading and writing the files edge-pqrnn is given.

Reading: :func:`read_file` is the one way every input file is read (artifacts, gates,
data files, the reference run's files): regular files only, the size checked against a
limit before reading, and one clear line for whatever else a path can be (missing, a
directory, a FIFO or device that would block or never end, a symbolic link loop, too
big, unreadable). Writing: :func:`atomic_write_bytes`, a reader sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from edge_pqrnn.errors import EdgePqrnnError

#: Size limits, checked before a byte is read. Far above what edge-pqrnn writes (a pQRNN
#: artifact is 1-3 MB; a gates file a few hundred bytes), far below what hurts a machine.
MAX_ARTIFACT_BYTES = 256 * 2**20
MAX_CONFIG_BYTES = 1 * 2**20
MAX_DATA_BYTES = 1 * 2**30
MAX_RUN_FILE_BYTES = 64 * 2**20
MAX_WEIGHTS_BYTES = 1 * 2**30
#: Environment variable that replaces every limit above (bytes), for unusually big inputs.
LIMIT_VARIABLE = "EDGE_PQRNN_MAX_FILE_BYTES"

#: Per-process scratch folders (``<system temp>/edge-pqrnn-scratch-<pid>``), see
#: :func:`scratch_tempdir`.
SCRATCH_PREFIX = "edge-pqrnn-scratch-"

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _limit(limit: int) -> int:
    override = os.environ.get(LIMIT_VARIABLE, "").strip()
    return int(override) if override.isdigit() and int(override) > 0 else limit


def _refuse_non_regular(path: Path, st: os.stat_result, error: type[EdgePqrnnError], fix: str,
                        directory: str | None) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path} is a directory: {directory or fix}")
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"{path} is {kind}, not a regular file: edge-pqrnn reads only regular files (a pipe or device "
                    f"can block or never end); save the content to a file and pass that")


def check_file(path: str | os.PathLike, *, limit: int, error: type[EdgePqrnnError] = EdgePqrnnError,
               fix: str = "check the path", directory: str | None = None, what: str = "this input") -> int:
    """Check that ``path`` is a regular file of at most ``limit`` bytes, without reading it.

    Args:
        path: the file.
        limit: the most bytes accepted (``EDGE_PQRNN_MAX_FILE_BYTES`` overrides it).
        error: the exception type to raise (the caller's: ArtifactError, DataError...).
        fix: what to do when the file is missing (ends the message).
        directory: what to do when it is a directory (default: ``fix``).
        what: the kind of input, for the size message.

    Returns:
        The file's size in bytes.

    Raises:
        EdgePqrnnError: (of type ``error``) missing, a broken or looping symbolic link,
            a directory, a FIFO/device/socket, bigger than the limit, or not readable.

    Example:
        >>> check_file("/dev/zero", limit=10)
        Traceback (most recent call last):
        ...
        edge_pqrnn.errors.EdgePqrnnError: /dev/zero is a character device, not a regular file: ...
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _stat_error(path, exc, error, fix) from None
    _refuse_non_regular(path, st, error, fix, directory)
    _check_size(path, st.st_size, limit, error, what)
    return st.st_size


def _stat_error(path: Path, exc: OSError, error: type[EdgePqrnnError], fix: str) -> EdgePqrnnError:
    if exc.errno == errno.ELOOP:
        return error(f"{path} is a symbolic link loop (following it leads back to itself): point it at the real "
                     "file")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        if os.path.islink(path):
            return error(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist: {fix}")
        return error(f"{path} does not exist: {fix}")
    if exc.errno == errno.ENAMETOOLONG:
        return error(f"{path} is not a usable path ({exc.strerror}): {fix}")
    return error(f"{path} cannot be read ({exc.strerror}): check its permissions")


def _check_size(path: Path, size: int, limit: int, error: type[EdgePqrnnError], what: str) -> None:
    limit = _limit(limit)
    if size > limit:
        raise error(f"{path} is {size:,} bytes, more than the {limit:,} bytes edge-pqrnn reads as {what}: pass "
                    f"the right file, or raise the limit with {LIMIT_VARIABLE}=BYTES")


def read_file(path: str | os.PathLike, *, limit: int, error: type[EdgePqrnnError] = EdgePqrnnError,
              fix: str = "check the path", directory: str | None = None, what: str = "this input") -> bytes:
    """The bytes of a regular file, checked before reading (see :func:`check_file`).

    The file is opened without blocking (a path swapped for a FIFO after the check
    cannot hang the read) and checked again on the open descriptor; at most
    ``limit + 1`` bytes are ever read, so a file that grows meanwhile is refused too.

    Args:
        path: the file.
        limit: the most bytes accepted (``EDGE_PQRNN_MAX_FILE_BYTES`` overrides it).
        error: the exception type to raise.
        fix: what to do when the file is missing.
        directory: what to do when it is a directory (default: ``fix``).
        what: the kind of input, for the size message.

    Returns:
        The file's content.

    Raises:
        EdgePqrnnError: (of type ``error``) as :func:`check_file`, or a read error.

    Example:
        >>> read_file("gates.toml", limit=MAX_CONFIG_BYTES, what="a gates file")[:6]  # doctest: +SKIP
        b'[size]'
    """
    path = Path(path)
    check_file(path, limit=limit, error=error, fix=fix, directory=directory, what=what)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _stat_error(path, exc, error, fix) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        _refuse_non_regular(path, st, error, fix, directory)
        _check_size(path, st.st_size, limit, error, what)
        try:
            data = f.read(_limit(limit) + 1)
        except OSError as exc:
            raise error(f"{path} cannot be read ({exc.strerror}): copy the file again") from None
    _check_size(path, len(data), limit, error, what)
    return data


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for a moment, for
    every thread) where Linux reports it; else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def destination_mode(path: str | os.PathLike, directory: bool = False) -> int:
    """The permission bits a file or directory written over ``path`` should get: those
    of the one it replaces, or for a new one what ``open``/``mkdir`` would give (0666 or
    0777 minus the umask). Temp files and folders are created 0600/0700, and a rename
    keeps that mode: without this, an artifact that was 0644 became unreadable to an
    app running as another user."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode) == directory:
            return stat.S_IMODE(st.st_mode)
    except OSError:
        pass
    return (0o777 if directory else 0o666) & ~_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder + rename.

    A crash (even SIGKILL) at any point leaves either the previous file or the complete
    new one; the temp file is removed on failure. The file keeps the mode of the one it
    replaces (a new file: 0666 minus the umask), see :func:`destination_mode`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = destination_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_scratch(base: str | os.PathLike | None = None) -> list[Path]:
    """Remove the scratch folders of processes that no longer run (killed exports).

    Args:
        base: the folder holding them (default: the system temp folder).

    Returns:
        The folders removed.
    """
    base = Path(base if base is not None else tempfile.gettempdir())
    removed = []
    for folder in base.glob(f"{SCRATCH_PREFIX}*"):
        pid = folder.name[len(SCRATCH_PREFIX):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextlib.contextmanager
def scratch_tempdir() -> Iterator[Path]:
    """Within the block, Python's temp files go to this process's own scratch folder.

    TensorFlow's autograph writes every traced function as a ``__autograph_generated_file*.py``
    in the temp folder and removes them only at a clean exit: a killed export left them
    behind for good. In a per-process folder they are found again: folders of processes
    that no longer run are removed on entry (:func:`sweep_scratch`), and this process's
    own at its exit.

    Yields:
        The scratch folder.
    """
    saved = tempfile.tempdir
    base = Path(tempfile.gettempdir())
    sweep_scratch(base)
    mine = base / f"{SCRATCH_PREFIX}{os.getpid()}"
    if not mine.is_dir():
        mine.mkdir(mode=0o700, exist_ok=True)
        atexit.register(shutil.rmtree, mine, True)  # runs before autograph's own (LIFO), which then skips
    tempfile.tempdir = str(mine)
    try:
        yield mine
    finally:
        tempfile.tempdir = saved


_F = TypeVar("_F", bound=Callable[..., Any])


def in_scratch_tempdir(func: _F) -> _F:
    """Run ``func`` inside :func:`scratch_tempdir` (for the stages that trace TensorFlow)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with scratch_tempdir():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
