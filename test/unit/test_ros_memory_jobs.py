"""Memory files stay inside memory_dir: what a save_memory / load_memory request may name, and what
an existing file must be before it is replaced. Real files, symlinks and FIFOs in tmp_path."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from safetensors.numpy import save_file

from spatial_ttt_ros.ros.memory_jobs import (
    check_load_source,
    check_save_target,
    confined_path,
    is_memory_file,
)
from spatial_ttt_ros.runtime.state import STATE_FORMAT


@pytest.fixture
def root(tmp_path):
    (tmp_path / "memory").mkdir()
    (tmp_path / "outside").mkdir()
    return tmp_path / "memory"


def test_plain_names_and_the_default_resolve_inside(root):
    assert confined_path("a.safetensors", "", root) == root.resolve() / "a.safetensors"
    assert confined_path("", "b.safetensors", root) == root.resolve() / "b.safetensors"
    assert confined_path(str(root / "c.safetensors"), "", root) == root.resolve() / "c.safetensors"
    (root / "robot1").mkdir()
    assert confined_path("robot1/d.safetensors", "", root) == root.resolve() / "robot1" / "d.safetensors"
    with pytest.raises(ValueError, match="memory_path parameter is empty"):
        confined_path("  ", "", root)


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside/x.safetensors", "a/../../outside/x", ".", "..",
                                  "link_dir/x.safetensors", "link_file"])
def test_anything_resolving_outside_is_refused(root, name):
    (root / "a").mkdir()
    (root / "link_dir").symlink_to(root.parent / "outside", target_is_directory=True)
    (root / "link_file").symlink_to(root.parent / "outside" / "victim")
    with pytest.raises(ValueError, match="outside the memory directory"):
        confined_path(name, "", root)


def test_no_directory_is_created_for_a_request(root):
    with pytest.raises(ValueError, match="does not exist"):
        confined_path("new/deeper/x.safetensors", "", root)
    assert not (root / "new").exists()


def test_a_huge_name_is_refused_without_echoing_it(root):
    with pytest.raises(ValueError) as info:
        confined_path("x" * 1_000_000, "", root)
    assert len(str(info.value)) < 400
    with pytest.raises(ValueError) as info:
        confined_path("../" + "y" * 3000, "", root)
    assert len(str(info.value)) < 600


def _ours(path):
    save_file({"t": np.zeros(2, np.float32)}, str(path), metadata={"format": STATE_FORMAT, "header": "{}"})


def test_only_our_memory_files_are_replaced(root):
    ours, foreign, fifo = root / "ours.safetensors", root / "notes.txt", root / "pipe"
    _ours(ours)
    foreign.write_text("someone's document")
    other = root / "model.safetensors"
    save_file({"w": np.ones(3, np.float32)}, str(other), metadata={"format": "pt"})
    os.mkfifo(fifo)
    check_save_target(root / "fresh.safetensors")  # free: fine
    check_save_target(ours)  # ours: may be replaced
    assert is_memory_file(ours) and not is_memory_file(foreign) and not is_memory_file(other)
    for path, why in ((foreign, "not a spatial_ttt memory file"), (other, "not a spatial_ttt memory file"),
                      (fifo, "not a regular file"), (root, "not a regular file")):
        with pytest.raises(ValueError, match=why):
            check_save_target(path)
    assert foreign.read_text() == "someone's document"


def test_loading_a_fifo_is_refused_without_blocking(root):
    fifo = root / "pipe"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt():
        with pytest.raises(ValueError, match="not a regular file"):
            check_load_source(fifo)
        assert not is_memory_file(fifo)  # opens non-blocking: no writer needed
        done.set()

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert done.is_set(), "check on a FIFO blocked"
    with pytest.raises(ValueError, match="does not exist"):
        check_load_source(root / "missing.safetensors")
