"""The build cache cannot be poisoned: what another user could have written
is never adopted (bpfring._cache's rules), tested with real builds, real
files, modes and owners (the tests run as root, so they can chown to an
unprivileged uid the way another user's files would look)."""

from __future__ import annotations

import importlib
import json
import logging
import os
import shutil
from pathlib import Path

import pytest

import bpfring

b = importlib.import_module("bpfring.build")

NOBODY = 65534
PROG = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("tp/syscalls/sys_enter_getpid") int honest(void *ctx) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""
EVIL = PROG.replace("honest", "planted")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown test files")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("BPFRING_CACHE_DIR", str(path))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "prog.bpf.c"
    src.write_text(PROG)
    return src


def _plant(cache: Path, source: Path, tmp_path: Path) -> Path:
    """Do what an attacker with write access to the cache would do: build
    the honest program once to learn its cache key, then replace the cache's
    entry with a manifest that points at a planted object (with the correct
    hash, so only the trust rules can stop it)."""
    first = b.build_info(source)
    evil_src = tmp_path / "evil.bpf.c"
    evil_src.write_text(EVIL)
    evil = b.build_info(evil_src, cache_dir=tmp_path / "evilcache").path
    manifest = first.path.parent / f"{first.key}.json"
    data = json.loads(manifest.read_text())
    planted = first.path.parent / "planted.bpf.o"
    shutil.copy(evil, planted)
    data["entries"][0]["object"] = planted.name
    data["entries"][0]["sha256"] = b.sha256_file(planted)
    manifest.write_text(json.dumps(data))
    return planted


def _program_names(path: Path) -> list[str]:
    with bpfring.load(path) as obj:
        return list(obj.programs)


def test_sanity_the_plant_works_when_trusted(kernel, cache, source, tmp_path):
    """Without the attack, the planted manifest is a real cache hit: so the
    tests below fail for the right reason."""
    planted = _plant(cache, source, tmp_path)
    hit = b.build_info(source)
    assert hit.cached and hit.path == planted
    assert _program_names(hit.path) == ["planted"]


def test_world_writable_root_is_moved_aside(kernel, cache, source, tmp_path, caplog):
    _plant(cache, source, tmp_path)
    os.chmod(cache, 0o777)
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        result = b.build_info(source)
    assert not result.cached
    assert _program_names(result.path) == ["honest"]
    assert (cache.stat().st_mode & 0o777) == 0o700
    aside = [p for p in cache.parent.iterdir() if p.name.startswith("cache.distrusted-")]
    assert len(aside) == 1 and "writable by group or others" in caplog.text


def test_group_writable_subdir_is_moved_aside(kernel, cache, source, tmp_path, caplog):
    planted = _plant(cache, source, tmp_path)
    os.chmod(planted.parent, 0o770)
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        result = b.build_info(source)
    assert not result.cached and _program_names(result.path) == ["honest"]
    assert "moved it to" in caplog.text


def test_symlinked_obj_dir_is_not_followed(kernel, cache, source, tmp_path, caplog):
    planted = _plant(cache, source, tmp_path)
    elsewhere = tmp_path / "attacker-objs"
    shutil.move(cache / "obj", elsewhere)
    os.symlink(elsewhere, cache / "obj")
    assert (cache / "obj" / planted.parent.name / planted.name).exists()
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        result = b.build_info(source)
    assert not result.cached and _program_names(result.path) == ["honest"]
    assert not (cache / "obj").is_symlink()
    assert "symbolic link" in caplog.text


@pytest.mark.parametrize("what", ["manifest", "object"])
@pytest.mark.parametrize("how", ["foreign-owner", "group-writable", "symlink"])
def test_untrusted_entry_files_are_misses(kernel, cache, source, tmp_path, what, how):
    planted = _plant(cache, source, tmp_path)
    first_key = b.build_info(source).key
    target = planted if what == "object" else planted.parent / f"{first_key}.json"
    if how == "foreign-owner":
        os.chown(target, NOBODY, NOBODY)
    elif how == "group-writable":
        os.chmod(target, 0o664)
    else:
        real = tmp_path / f"real-{target.name}"
        shutil.move(target, real)
        os.symlink(real, target)
    result = b.build_info(source)
    assert not result.cached and _program_names(result.path) == ["honest"]
    assert b.build_info(source).cached  # the rebuilt entry is trusted again


def test_root_owned_by_someone_else_or_a_symlink_is_refused(kernel, tmp_path, source,
                                                             monkeypatch):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, NOBODY, NOBODY)
    with pytest.raises(bpfring.BPFError, match="owned by uid 65534"):
        b.build_info(source, cache_dir=other)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    link = tmp_path / "link"
    os.symlink(mine, link)
    with pytest.raises(bpfring.BPFError, match="symbolic link"):
        b.build_info(source, cache_dir=link)


def test_readable_root_is_tightened_and_kept(kernel, cache, source):
    first = b.build_info(source)
    os.chmod(cache, 0o755)
    again = b.build_info(source)
    assert again.cached and again.path == first.path
    assert (cache.stat().st_mode & 0o777) == 0o700


def test_untrusted_vmlinux_header_is_regenerated(kernel, cache, source, caplog):
    header = b.vmlinux_header()
    good = header.read_bytes()
    header.write_bytes(b"/* planted */\n")
    digest = header.with_name("vmlinux.h.sha256")
    import hashlib

    digest.write_text(hashlib.sha256(b"/* planted */\n").hexdigest() + "\n")
    os.chown(digest, NOBODY, NOBODY)
    with caplog.at_level(logging.WARNING, logger="bpfring"):
        again = b.vmlinux_header()
    assert again.read_bytes() == good
    assert "regenerating vmlinux.h" in caplog.text
