"""Log files rotate by size, keep a bounded number of backups, and stay private (0600)."""

from __future__ import annotations

import logging
import os
import stat

from skate._log_files import RotatingTextFile, _PrivateRotatingFileHandler, shift_backups


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_text_file_rotates_at_its_size_and_keeps_n_backups(tmp_path):
    path = str(tmp_path / "worker.out")
    f = RotatingTextFile(path, max_bytes=100, backups=2)
    for i in range(10):
        f.write(f"line {i:03d} " + "x" * 40 + "\n")  # 50 characters a line: two per file
    f.flush()
    names = sorted(os.listdir(tmp_path))
    assert names == ["worker.out", "worker.out.1", "worker.out.2"]  # older ones were deleted
    # Two lines fill a file, which then rotates: the newest lines are in .1, older in .2.
    assert "line 009" in open(f"{path}.1").read() and "line 007" in open(f"{path}.2").read()
    assert not any("line 005" in open(tmp_path / name).read() for name in names)
    for name in names:
        assert _mode(str(tmp_path / name)) == 0o600
        assert os.path.getsize(tmp_path / name) <= 100


def test_rotation_moves_a_descriptor_to_the_new_file(tmp_path):
    path = str(tmp_path / "w.err")
    spare = os.open(os.devnull, os.O_WRONLY)  # stands in for descriptor 2
    try:
        f = RotatingTextFile(path, max_bytes=10, backups=1, fd_targets=(spare,))
        f.write("0123456789\n")  # rotates
        os.write(spare, b"below python\n")
        f.flush()
        assert open(path).read() == "below python\n"
        assert open(f"{path}.1").read() == "0123456789\n"
    finally:
        os.close(spare)


def test_shift_backups_with_no_backups_just_removes(tmp_path):
    path = tmp_path / "a.log"
    path.write_text("x")
    shift_backups(str(path), 0)
    assert not path.exists()


def test_logging_handler_rotates_into_private_files(tmp_path):
    path = str(tmp_path / "raylet.log")
    handler = _PrivateRotatingFileHandler(path, maxBytes=200, backupCount=1)
    log = logging.getLogger("skate-test-rotation")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(40):
            log.warning("message %d %s", i, "y" * 30)
    finally:
        log.removeHandler(handler)
        handler.close()
    assert sorted(os.listdir(tmp_path)) == ["raylet.log", "raylet.log.1"]
    assert _mode(path) == 0o600 and _mode(path + ".1") == 0o600
