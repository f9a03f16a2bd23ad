"""Packing working_dir / py_modules: deterministic zips, excludes, .gitignore, the size limit."""

from __future__ import annotations

import io
import os
import zipfile

import pytest

from skate.runtime_env import packaging
from skate.runtime_env.packaging import PackageTooLargeError, is_excluded, pack_directory, parse_rules


def _tree(root, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_same_tree_same_bytes_and_hash(tmp_path):
    _tree(tmp_path / "a", {"x.py": "1", "sub/y.txt": "2"})
    _tree(tmp_path / "b", {"sub/y.txt": "2", "x.py": "1"})
    os.utime(tmp_path / "b" / "x.py", (1, 1))  # timestamps do not matter
    da, ha = pack_directory(str(tmp_path / "a"))
    db, hb = pack_directory(str(tmp_path / "b"))
    assert da == db and ha == hb
    assert _names(da) == ["sub/y.txt", "x.py"]
    (tmp_path / "b" / "x.py").write_text("changed")
    assert pack_directory(str(tmp_path / "b"))[1] != ha


def test_prefix_puts_the_package_under_its_name(tmp_path):
    _tree(tmp_path / "pkg", {"__init__.py": "", "m.py": ""})
    data, _ = pack_directory(str(tmp_path / "pkg"), prefix="pkg/")
    assert _names(data) == ["pkg/__init__.py", "pkg/m.py"]


def test_excludes_and_gitignore(tmp_path):
    _tree(
        tmp_path,
        {
            "keep.py": "",
            "big.bin": "",
            "data/raw.csv": "",
            "data/keep.csv": "",
            "logs/a.log": "",
            "sub/.gitignore": "*.tmp\n!important.tmp\n",
            "sub/x.tmp": "",
            "sub/important.tmp": "",
            "sub/deeper/y.tmp": "",
            "x.tmp": "",
            ".gitignore": "# comment\n\nlogs/\n/big.bin\n",
            ".git/HEAD": "ref",
        },
    )
    files = [rel for rel, _, _ in packaging.collect_files(str(tmp_path), ["data/raw.csv"])]
    assert files == [
        ".gitignore",
        "data/keep.csv",
        "keep.py",
        "sub/.gitignore",
        "sub/important.tmp",
        "x.tmp",  # the sub/.gitignore applies below sub/ only
    ]


@pytest.mark.parametrize(
    "pattern, path, is_dir, excluded",
    [
        ("*.pyc", "a/b/c.pyc", False, True),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "a/top.txt", False, False),
        ("build/", "build", True, True),
        ("build/", "build", False, False),
        ("a/**/z", "a/b/c/z", False, True),
        ("a/**/z", "a/z", False, True),
        ("**/cache", "x/y/cache", True, True),
        ("doc/*.md", "doc/a.md", False, True),
        ("doc/*.md", "doc/sub/a.md", False, False),
        ("fil?.txt", "file.txt", False, True),
        ("[ab].txt", "b.txt", False, True),
        ("[!ab].txt", "b.txt", False, False),
    ],
)
def test_gitignore_patterns(pattern, path, is_dir, excluded):
    assert is_excluded(parse_rules([pattern]), path, is_dir) is excluded


def test_last_matching_rule_wins():
    rules = parse_rules(["*.log", "!keep.log"])
    assert is_excluded(rules, "a.log", False)
    assert not is_excluded(rules, "keep.log", False)
    assert is_excluded(parse_rules(["!keep.log", "*.log"]), "keep.log", False)


def test_size_limit_names_the_biggest_files(tmp_path):
    _tree(tmp_path, {"small.txt": "x" * 10, "huge.bin": "x" * 5000, "mid.dat": "x" * 2000})
    with pytest.raises(PackageTooLargeError) as info:
        pack_directory(str(tmp_path), limit=4000, what="working_dir 'proj'")
    message = str(info.value)
    assert "working_dir 'proj'" in message
    assert message.index("huge.bin") < message.index("mid.dat") < message.index("small.txt")
    assert "excludes" in message and "SKATE_RUNTIME_ENV_MAX_PACKAGE_BYTES" in message
    assert isinstance(info.value, ValueError)
    # Excluding the big file brings it under the limit.
    pack_directory(str(tmp_path), excludes=["huge.bin"], limit=4000)


def test_executable_bit_survives(tmp_path):
    _tree(tmp_path, {"run.sh": "#!/bin/sh\n"})
    os.chmod(tmp_path / "run.sh", 0o755)
    data, _ = pack_directory(str(tmp_path))
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("run.sh")
    assert (info.external_attr >> 16) & 0o777 == 0o755
