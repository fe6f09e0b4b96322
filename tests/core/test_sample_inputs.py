"""The example workflows' sample images reach ComfyUI's input folder (sample_inputs.py): copied
under their own names, never over another file, and a folder that cannot be written gives one
warning, not an error (tests/host/test_server.py checks it in the host's running server)."""
import logging
import os
import shutil
import sys

import pytest

import sample_inputs
from consistory_run import example_workflows as ex
from sample_inputs import PREFIX, SAMPLES, place_samples, place_samples_on_host, sample_files

NAMES = [p.name for p in sample_files()]


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_samples_are_the_images_the_workflows_load_under_the_packs_prefix():
    assert sorted(NAMES) == sorted([ex.PHOTO, ex.DEPTH_IMAGE])
    assert all(name.startswith(PREFIX) for name in NAMES), NAMES


def test_a_fresh_folder_gets_every_sample_and_a_second_load_changes_nothing(tmp_path, caplog):
    folder = tmp_path / "input"  # not there yet: made
    first = place_samples(folder)
    assert first == {"copied": NAMES, "present": [], "kept": [], "error": None}
    for name in NAMES:
        assert (folder / name).read_bytes() == (SAMPLES / name).read_bytes()
    before = {name: os.stat(folder / name) for name in NAMES}
    again = place_samples(folder)
    assert again == {"copied": [], "present": NAMES, "kept": [], "error": None}
    for name in NAMES:  # the same file, not written again
        now = os.stat(folder / name)
        assert (now.st_ino, now.st_mtime_ns) == (before[name].st_ino, before[name].st_mtime_ns)
    assert warnings_of(caplog) == []


def test_a_different_file_folder_or_link_of_that_name_is_never_replaced(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "input"
    folder.mkdir()
    photo, depth = folder / ex.PHOTO, folder / ex.DEPTH_IMAGE
    photo.write_bytes(b"the user's own picture")
    depth.mkdir()
    other = tmp_path / "elsewhere.png"
    other.write_bytes(b"x")
    result = place_samples(folder)
    assert sorted(result["kept"]) == sorted(NAMES) and result["copied"] == [] and result["error"] is None
    assert photo.read_bytes() == b"the user's own picture" and depth.is_dir()
    assert any("kept" in r.getMessage() and ex.PHOTO in r.getMessage() for r in caplog.records)

    depth.rmdir()
    depth.symlink_to(other)  # a link: left as it is, and what it points to untouched
    assert sorted(place_samples(folder)["kept"]) == sorted(NAMES)
    assert depth.is_symlink() and other.read_bytes() == b"x"


def test_a_folder_that_cannot_be_written_gives_one_warning_and_no_error(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "input"
    folder.mkdir()

    def refuse(sample, target):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(sample_inputs, "_copy_new", refuse)
    result = place_samples(folder)
    assert result["copied"] == [] and "Permission denied" in result["error"]
    assert list(folder.iterdir()) == []
    [warning] = warnings_of(caplog)  # one, for all the samples
    assert str(folder) in warning and str(SAMPLES) in warning


def test_a_copy_that_fails_half_way_leaves_no_partial_file(tmp_path, monkeypatch, caplog):
    folder = tmp_path / "input"
    folder.mkdir()

    def disk_full(source, out):
        out.write(source.read(100))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", disk_full)
    result = place_samples(folder)
    assert "No space left" in result["error"] and result["copied"] == []
    assert list(folder.iterdir()) == []  # the half-written first sample is gone
    assert len(warnings_of(caplog)) == 1


def test_only_a_host_that_runs_its_server_gets_the_samples(tmp_path, monkeypatch):
    """Where ComfyUI serves its page (PromptServer.instance set before the packs load) the samples
    go to folder_paths.get_input_directory(); a headless host (no server instance) and a process
    without ComfyUI get nothing."""
    import types
    assert place_samples_on_host() is None  # no ComfyUI in this process
    folder_paths = types.SimpleNamespace(get_input_directory=lambda: str(tmp_path / "input"))
    server = types.SimpleNamespace(PromptServer=type("PromptServer", (), {"instance": None}))
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    monkeypatch.setitem(sys.modules, "server", server)
    assert place_samples_on_host() is None and not (tmp_path / "input").exists()
    server.PromptServer.instance = object()
    assert place_samples_on_host()["copied"] == NAMES
    assert sorted(p.name for p in (tmp_path / "input").iterdir()) == NAMES
