"""The path builder keeps every path built from data inside its root; keyval files cannot be forged."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from afe.paths import UnsafePath, check_part, inside
from scheduler import results


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "results").mkdir()
    return tmp_path / "results"


@pytest.mark.parametrize("part", [
    "12-alice/host1", "12-alice/", "hosts/host-1.lab", "special_tasks/7-verify", "日本/ホスト",
])
def test_plain_relative_names_are_accepted(root, part):
    path = inside(root, part)
    assert path == root.resolve() / part.rstrip("/")


@pytest.mark.parametrize("part", [
    "..", "../elsewhere", "12-alice/../../etc", ".", "./x", "", "/etc/passwd", "a//b", "a\x00b", "a\nb",
    "a\x7fb", "x" * 256, "12-alice/" + "h" * 300,
])
def test_unsafe_parts_are_refused(root, part):
    with pytest.raises(UnsafePath):
        inside(root, part)


@pytest.mark.parametrize("part", [None, 12, b"bytes", ["a"]])
def test_parts_that_are_not_text_are_refused(part):
    with pytest.raises(UnsafePath):
        check_part(part)


def test_a_symlink_out_of_the_root_is_refused_but_one_within_is_followed(root, tmp_path):
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "escape")
    (root / "real").mkdir()
    os.symlink(root / "real", root / "alias")
    with pytest.raises(UnsafePath, match="outside"):
        inside(root, "escape", "keyval")
    assert inside(root, "alias", "keyval") == root.resolve() / "real" / "keyval"


def test_the_root_itself_may_be_reached_through_its_own_link(tmp_path):
    (tmp_path / "store").mkdir()
    os.symlink(tmp_path / "store", tmp_path / "results")
    assert inside(tmp_path / "results", "1-alice") == (tmp_path / "store" / "1-alice")


def test_host_keyvals_for_a_hostile_hostname_are_refused_and_nothing_is_written(root, tmp_path):
    for hostname in ["../../victim", "/tmp/victim", "a\x00b"]:
        with pytest.raises(UnsafePath):
            results.write_host_keyvals(root, hostname, "platform", ["a"])
    assert not (tmp_path / "victim").exists()
    assert not (root / "host_keyvals").exists() or not any((root / "host_keyvals").iterdir())


def test_host_keyvals_quote_labels_so_they_stay_one_line(root):
    results.write_host_keyvals(root, "host1", "plat", ["plat", "board:x", "pool:a=b"])
    lines = (root / "host_keyvals" / "host1").read_text().splitlines()
    assert lines == ["platform=plat", "labels=board%3Ax,pool%3Aa%3Db"]


@pytest.mark.parametrize("keyvals", [
    {"ok": "x\njob_finished=0"},
    {"ok\njob_queued": "1"},
    {"a=b": "1"},
    {"ok": "x\r"},
    {"": "1"},
])
def test_a_keyval_that_would_forge_another_line_is_refused_and_the_file_is_untouched(root, keyvals):
    results.write_keyvals(root, {"job_queued": 1})
    with pytest.raises(ValueError, match="keyval"):
        results.write_keyvals(root, keyvals, append=True)
    assert (root / "keyval").read_text() == "job_queued=1\n"


def test_a_status_comment_stays_one_status_log_line(root):
    results.append_status_comment(root, "lost\nFAIL\t----\tforged")
    lines = (root / "status.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("INFO\t----\t----\t")
    assert lines[0].count("\t") == 3


def test_a_root_resolved_once_gives_the_same_answers_and_refusals(root, tmp_path):
    resolved = root.resolve()
    os.symlink(tmp_path, root / "escape")
    assert inside(resolved, "1-alice", "host1", root_resolved=True) == inside(root, "1-alice", "host1")
    with pytest.raises(UnsafePath, match="outside"):
        inside(resolved, "escape", "keyval", root_resolved=True)
    with pytest.raises(UnsafePath):
        inside(resolved, "../x", root_resolved=True)
