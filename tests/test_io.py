"""edge_pqrnn/_io.py: the one file-reading path (regular files only, size checked before
reading, one line for everything else a path can be) used by every input, and atomic
writes that keep the destination's mode (issue 23)."""

from __future__ import annotations

import json
import re
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge_pqrnn._io import LIMIT_VARIABLE, atomic_write_bytes, check_file, destination_mode, read_file
from edge_pqrnn.errors import ArtifactError, ConfigError, DataError, EdgePqrnnError

NOT_REGULAR = ("not a regular file: edge-pqrnn reads only regular files (a pipe or device can block or never end); "
               "save the content to a file and pass that")


@pytest.fixture
def odd_paths(tmp_path: Path) -> dict[str, Path]:
    """A FIFO, a symlink loop, a dangling symlink, a sparse 300 MB file, a directory."""
    paths = {"fifo": tmp_path / "fifo", "loop": tmp_path / "loop", "dangling": tmp_path / "dangling",
             "huge": tmp_path / "huge.bin", "directory": tmp_path / "dir"}
    os.mkfifo(paths["fifo"])
    os.symlink(paths["loop"], paths["loop"])
    os.symlink(tmp_path / "nothing", paths["dangling"])
    with open(paths["huge"], "wb") as f:
        f.truncate(300 * 2**20)  # sparse: no disk, no memory, st_size 300 MB
    paths["directory"].mkdir()
    return paths


def expected_lines(paths: dict[str, Path], limit: int, what: str, fix: str) -> dict[str, str]:
    return {
        "fifo": f"{paths['fifo']} is a named pipe (FIFO), {NOT_REGULAR}",
        "loop": f"{paths['loop']} is a symbolic link loop (following it leads back to itself): point it at the "
                "real file",
        "dangling": f"{paths['dangling']} is a symbolic link to {paths['dangling'].parent / 'nothing'}, which does "
                    f"not exist: {fix}",
        "huge": f"{paths['huge']} is 314,572,800 bytes, more than the {limit:,} bytes edge-pqrnn reads as {what}: "
                f"pass the right file, or raise the limit with {LIMIT_VARIABLE}=BYTES",
        "directory": f"{paths['directory']} is a directory: {fix}",
    }


def test_read_file_refuses_what_is_not_a_small_regular_file(odd_paths):
    lines = expected_lines(odd_paths, 1000, "a test input", "check the path")
    for kind, path in odd_paths.items():
        with pytest.raises(DataError) as error:
            read_file(path, limit=1000, error=DataError, what="a test input")
        assert str(error.value) == lines[kind], kind
    with pytest.raises(EdgePqrnnError, match=f"^/dev/zero is a character device, {re.escape(NOT_REGULAR)}$"):
        read_file("/dev/zero", limit=1000)  # endless: refused before a byte is read
    with pytest.raises(EdgePqrnnError, match="^/dev/null is a character device"):
        check_file("/dev/null", limit=1000)


def test_read_file_reads_regular_files_and_symlinks_to_them(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_bytes(b"x" * 100)
    os.symlink(path, tmp_path / "link")
    assert read_file(tmp_path / "link", limit=100) == b"x" * 100
    with pytest.raises(EdgePqrnnError, match="is 100 bytes, more than the 99 bytes"):
        read_file(path, limit=99)
    monkeypatch.setenv(LIMIT_VARIABLE, "100")  # the override replaces every limit
    assert read_file(path, limit=1) == b"x" * 100


def test_fifo_with_a_writer_does_not_block_either(tmp_path):
    # With O_NONBLOCK and the check on the open descriptor, even a FIFO that a writer
    # holds open is refused at once.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = subprocess.Popen([sys.executable, "-c", f"import time; f = open({str(fifo)!r}, 'wb'); time.sleep(30)"])
    try:
        with pytest.raises(ArtifactError, match="is a named pipe"):
            read_file(fifo, limit=10, error=ArtifactError)
    finally:
        writer.kill()
        writer.wait()


def _run_cli(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    code = "import sys; from edge_pqrnn.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_every_command_refuses_a_fifo_or_huge_artifact_with_one_line(built, odd_paths, tmp_path):
    # Issue 23: a FIFO as the artifact made predict, inspect, validate and gate hang
    # forever; a huge file was read whole first. Now: exit 2 and one line each.
    gates = tmp_path / "gates.toml"
    gates.write_text("[size]\nmax_bytes = 10_000_000\n")
    commands = [["predict", "{}", "flights"], ["inspect", "{}"], ["validate", "{}", "--reference", str(built.run_dir)],
                ["gate", "{}", "--gates", str(gates)]]
    cases = [("fifo", c) for c in commands] + [("huge", commands[1]), ("loop", commands[0])]
    for kind, command in cases:
        args = [a.replace("{}", str(odd_paths[kind])) for a in command]
        proc = _run_cli(args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {odd_paths[kind]} is "), (args, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, args


def test_gates_data_and_reference_files_go_through_the_same_path(built, odd_paths, tmp_path):
    from edge_pqrnn.data import load_dataset
    from edge_pqrnn.gates import load_gates
    from edge_pqrnn.run import load_run

    with pytest.raises(ConfigError, match=f"^{odd_paths['fifo']} is a named pipe"):
        load_gates(odd_paths["fifo"])
    with pytest.raises(DataError, match=f"^{odd_paths['fifo']} is a named pipe"):
        load_dataset(f"jsonl:{odd_paths['fifo']}")
    with pytest.raises(DataError, match=f"^{odd_paths['loop']} is a symbolic link loop"):
        load_dataset(f"csv:{odd_paths['loop']}")
    # a reference run whose metrics.json is a FIFO
    run = tmp_path / "run"
    run.mkdir()
    for name in os.listdir(built.run_dir):
        os.symlink(built.run_dir / name, run / name)
    os.unlink(run / "metrics.json")
    os.mkfifo(run / "metrics.json")
    with pytest.raises(ArtifactError, match="metrics.json is a named pipe"):
        load_run(run)


def test_gates_file_not_utf8_is_one_line(built, tmp_path):
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    bad = tmp_path / "gates.toml"
    bad.write_bytes(b"[size]\n# caf\xe9\nmax_bytes = 5\n")
    result = CliRunner().invoke(main, ["gate", str(built.path), "--gates", str(bad)])
    assert result.exit_code == 2
    assert result.output == (f"error: {bad}: line 2 is not valid UTF-8 (byte 0xe9); TOML files are UTF-8: re-save "
                             "it as UTF-8\n")


# ------------------------------------------------------------------ atomic writes keep the mode


def test_atomic_write_keeps_the_destination_mode_and_gives_new_files_the_umask_default(tmp_path):
    # Issue 23: every atomic write left the destination 0600 (the temp file's mode).
    old = tmp_path / "model.tflite"
    old.write_bytes(b"old")
    os.chmod(old, 0o644)
    atomic_write_bytes(old, b"new")
    assert stat.S_IMODE(old.stat().st_mode) == 0o644 and old.read_bytes() == b"new"
    os.chmod(old, 0o640)
    atomic_write_bytes(old, b"newer")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    previous = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "fresh.json", b"{}")
        assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o640
        assert destination_mode(tmp_path / "new-dir", directory=True) == 0o750
    finally:
        os.umask(previous)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_umask_is_read_without_changing_it_for_other_threads(tmp_path):
    previous = os.umask(0o022)
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # os.umask(0) for a moment would show here as files created 0666
        while not stop.is_set():
            path = tmp_path / f"w{len(seen)}"
            path.write_bytes(b"")
            seen.append(stat.S_IMODE(path.stat().st_mode))
            path.unlink()

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(300):
            destination_mode(tmp_path / f"x{i}")
    finally:
        stop.set()
        watcher.join()
        os.umask(previous)
    assert set(seen) == {0o644}


def test_export_and_train_outputs_are_readable_by_others(tiny_run, tmp_path):
    # The run directory (trained in a 0700 temp folder) gets 0777 minus the umask.
    assert stat.S_IMODE(Path(tiny_run).stat().st_mode) == 0o777 & ~_umask()
    from edge_pqrnn.export import export

    out = tmp_path / "tiny.tflite"
    out.write_bytes(b"previous")
    os.chmod(out, 0o644)
    export(tiny_run, out, check=False, log=lambda _: None)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert json.loads(Path(tiny_run, "metrics.json").read_text())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_path_the_system_refuses_is_one_line_exit_2(built):
    # The exit-code contract covers OSErrors too (here: a report folder under /proc).
    from click.testing import CliRunner

    from edge_pqrnn.cli import main

    result = CliRunner().invoke(main, ["report", str(built.path), "--out", "/proc/edge-pqrnn-report"])
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: /proc/edge-pqrnn-report: ") and last.endswith("(check the path and its permissions)")
