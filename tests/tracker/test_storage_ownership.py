"""Event storage touches only what framecast wrote: retention, snapshot and clip writing under an
events dir that also holds other programs' files, symlinks pointing out, a symlink loop, folders
framecast did not make, and a folder it cannot delete from. Real files, real mtimes (os.utime)."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from common.config import load_config
from common.errors import ConfigError
from common.event_files import STORE_DIR, STORE_MARKER, ForeignStoreError
from tests.conftest import REPO
from tracker.recordings import ClipWriter, EventFiles

NOW = 1_800_000_000.0
YEAR = 365 * 24 * 3600.0
DAY = 24 * 3600.0


def event_id(i: int) -> str:
    return f"{NOW - YEAR + i:.6f}-{i:06x}"


def age(path, seconds_ago: float) -> None:
    os.utime(path, (NOW - seconds_ago, NOW - seconds_ago), follow_symlinks=False)


def jpeg() -> bytes:
    return cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()


def old_snapshot(files: EventFiles, cam: str, i: int, seconds_ago: float = YEAR):
    path = files.write_snapshot(cam, event_id(i), jpeg())
    age(path, seconds_ago)
    return path


def plant(path, text: str = "not framecast's", seconds_ago: float = YEAR):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    age(path, seconds_ago)
    return path


def left_alone(caplog) -> list[str]:
    return [r.path for r in caplog.records if r.getMessage() == "event storage: entry left alone"]


def test_retention_deletes_only_framecast_files_in_a_shared_folder(tmp_path, caplog):
    """`events.dir: .` next to the operator's notes, a backup and the config itself, all a year old:
    only the event framecast wrote goes, and each foreign entry is logged once over two passes."""
    notes = plant(tmp_path / "important-notes.txt")
    backup = plant(tmp_path / "backup" / "db.sql")
    config = plant(tmp_path / "cameras.yaml", "cameras: []\n")
    camera_named = plant(tmp_path / "door" / f"{event_id(9)}.jpg")  # a framecast-like name outside the store
    files = EventFiles(tmp_path)
    ours = old_snapshot(files, "door", 1)
    stray = plant(files.camera_dir("door") / "README.txt")  # someone's file inside the store
    folder = files.store / "door" / "exports"  # and someone's folder
    plant(folder / "old.mp4")
    caplog.set_level(logging.WARNING, logger="framecast.events")

    assert files.enforce_retention(max_age=3600, max_bytes=10**9, now=NOW) == [ours]
    assert files.enforce_retention(max_age=3600, max_bytes=10**9, now=NOW) == []

    for path in (notes, backup, config, camera_named, stray, folder / "old.mp4"):
        assert path.read_text() in ("not framecast's", "cameras: []\n"), path
    assert (files.store / STORE_MARKER).is_file()
    assert sorted(left_alone(caplog)) == sorted([str(stray), str(folder)])  # once each, two passes
    assert files.stats["foreign"] == 2 and files.stats["retention_errors"] == 0


def test_retention_by_size_counts_framecast_files_only_oldest_first(tmp_path):
    """The size cap: six events 1 min apart (1000 + 200 bytes each) against 5000 bytes: the two
    oldest go, both files each; a 1 MB foreign file beside them neither counts nor goes."""
    files = EventFiles(tmp_path)
    files.prepare_camera_dir("door")
    big = plant(files.store / "door" / "huge.bin", "x" * (1 << 20))
    made = []
    for i in range(6):
        for path, size in ((files.clip_path("door", event_id(i)), 1000), (files.snapshot_path("door", event_id(i)), 200)):
            path.write_bytes(b"x" * size)
            age(path, 600 - i * 60)
        made.append(event_id(i))
    deleted = files.enforce_retention(max_age=3600, max_bytes=5000, now=NOW)
    assert sorted({p.name.rsplit(".", 1)[0] for p in deleted}) == made[:2] and len(deleted) == 4
    # Age: events older than 400 s go (the 3rd at -480 s, the 4th at -420 s; the 5th at -360 s stays).
    deleted = files.enforce_retention(max_age=400, max_bytes=10**9, now=NOW)
    assert sorted({p.name.rsplit(".", 1)[0] for p in deleted}) == made[2:4]
    assert big.stat().st_size == 1 << 20


def test_symlinks_pointing_out_are_neither_followed_nor_deleted(tmp_path):
    outside = tmp_path / "outside"
    victim = plant(outside / f"{event_id(5)}.jpg")  # a framecast-like name, old, outside the events dir
    files = EventFiles(tmp_path / "events")
    ours = old_snapshot(files, "door", 1)
    file_link = files.camera_dir("door") / f"{event_id(2)}.mp4"
    file_link.symlink_to(victim)
    camera_link = files.store / "yard"
    camera_link.symlink_to(outside, target_is_directory=True)
    for link in (file_link, camera_link):
        age(link, YEAR)

    assert files.enforce_retention(max_age=3600, max_bytes=0, now=NOW) == [ours]
    assert file_link.is_symlink() and camera_link.is_symlink()
    assert victim.read_text() == "not framecast's"


def test_a_symlink_loop_does_not_stop_retention(tmp_path, caplog):
    """ELOOP: loops planted in a camera folder (one with an event's name), and an events dir that is
    itself a loop. The pass deletes what it can and returns; nothing is raised."""
    files = EventFiles(tmp_path / "events")
    ours = old_snapshot(files, "door", 1)
    folder = files.camera_dir("door")
    (folder / "a").symlink_to(folder / "b")
    (folder / "b").symlink_to(folder / "a")
    looped = folder / f"{event_id(3)}.mp4"
    looped.symlink_to(looped)
    assert files.enforce_retention(max_age=3600, max_bytes=10**9, now=NOW) == [ours]
    assert looped.is_symlink() and (folder / "a").is_symlink()

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    looping = EventFiles(tmp_path / "loop")
    caplog.set_level(logging.WARNING, logger="framecast.events")
    assert looping.enforce_retention(max_age=3600, max_bytes=0, now=NOW) == []
    assert looping.stats["retention_errors"] == 1
    with pytest.raises(OSError) as raised:
        looping.write_snapshot("door", event_id(4), jpeg())
    assert raised.value.errno == errno.ELOOP


@pytest.fixture
def immutable(tmp_path):
    """chattr +i on a folder (even root cannot delete from it); undone after the test."""
    made = []

    def _set(path):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here (needs root on ext2/3/4, xfs, btrfs)")
        made.append(path)

    yield _set
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_folder_that_refuses_deletion_is_logged_and_the_pass_goes_on(tmp_path, immutable, caplog):
    files = EventFiles(tmp_path)
    stuck = [old_snapshot(files, "attic", i) for i in range(3)]
    free = [old_snapshot(files, "yard", i, seconds_ago=YEAR - 10) for i in range(3, 5)]
    immutable(files.camera_dir("attic"))
    caplog.set_level(logging.WARNING, logger="framecast.events")

    deleted = files.enforce_retention(max_age=3600, max_bytes=10**9, now=NOW)

    assert deleted == free and all(p.exists() for p in stuck)
    warnings = [r for r in caplog.records if r.getMessage().startswith("retention could not")]
    assert [(r.camera, r.errors) for r in warnings] == [("attic", 3)]
    assert files.stats["retention_errors"] == 3
    # Trimming an event's files (its record left Redis) is as forgiving.
    assert files.delete_event("attic", event_id(0)) == 0 and files.stats["retention_errors"] == 4


def test_a_store_folder_framecast_did_not_make_is_never_written_or_cleaned(tmp_path, caplog):
    theirs = plant(tmp_path / STORE_DIR / "door" / f"{event_id(1)}.jpg")  # same name, no marker
    files = EventFiles(tmp_path)
    caplog.set_level(logging.WARNING, logger="framecast.events")
    for _ in range(2):
        assert files.enforce_retention(max_age=3600, max_bytes=0, now=NOW) == []
        with pytest.raises(ForeignStoreError):
            files.write_snapshot("door", event_id(2), jpeg())
    assert theirs.read_text() == "not framecast's"
    assert sorted(os.listdir(tmp_path / STORE_DIR / "door")) == [theirs.name]
    assert sorted(os.listdir(tmp_path)) == [STORE_DIR]  # nothing made aside was left behind
    assert left_alone(caplog) == [str(tmp_path / STORE_DIR)] * 2  # once by retention, once by writing


def test_writes_never_go_through_a_planted_symlink(tmp_path):
    """A camera folder that is a symlink out, and symlinks at the names a snapshot and a clip are
    written aside under: nothing outside changes, the writes are refused (and counted by the writer)."""
    outside = tmp_path / "outside"
    snap_victim = plant(outside / "snap-victim")
    clip_victim = plant(outside / "clip-victim")
    files = EventFiles(tmp_path / "events")
    files.prepare_camera_dir("door")
    snap = files.snapshot_path("door", event_id(1))
    snap.with_name(snap.name + ".part").symlink_to(snap_victim)
    clip = files.clip_path("door", event_id(2))
    clip.with_name(clip.name + ".part").symlink_to(clip_victim)
    (files.store / "yard").symlink_to(outside, target_is_directory=True)

    with pytest.raises(OSError):
        files.write_snapshot("door", event_id(1), jpeg())
    with pytest.raises(ForeignStoreError):
        files.write_snapshot("yard", event_id(3), jpeg())
    done = []
    writer = ClipWriter(files, on_done=lambda cam, eid, info: done.append((cam, eid, info))).start()
    frames = [(NOW + i / 10, jpeg()) for i in range(5)]
    writer.submit("door", event_id(2), frames)
    writer.submit("yard", event_id(4), frames)
    writer.stop(60)  # writes the queued clips first

    assert done == [("door", event_id(2), None), ("yard", event_id(4), None)]
    assert writer.stats["failed"] == 2 and writer.stats["written"] == 0
    assert snap_victim.read_text() == clip_victim.read_text() == "not framecast's"
    assert sorted(os.listdir(outside)) == ["clip-victim", "snap-victim"]
    assert not snap.exists() and not clip.exists()


def test_snapshots_and_clips_land_in_the_marked_store(tmp_path):
    files = EventFiles(tmp_path / "events")
    path = files.write_snapshot("door", event_id(1), jpeg())
    writer = ClipWriter(files).start()
    writer.submit("door", event_id(1), [(NOW + i / 10, jpeg()) for i in range(5)])
    writer.stop(60)  # writes the queued clips first
    assert path == tmp_path / "events" / STORE_DIR / "door" / f"{event_id(1)}.jpg"
    assert sorted(os.listdir(path.parent)) == [f"{event_id(1)}.jpg", f"{event_id(1)}.mp4"]
    assert files.owned() and files.readable(path) and files.readable(files.clip_path("door", event_id(1)))


# --- events.dir refused at start-up ---------------------------------------------------------------

def cams() -> list[dict]:
    return [{"id": "door", "source": "pattern"}]


@pytest.mark.parametrize("directory", [".", "./", "sub/..", "CONFIG_DIR", "/", "~", "HOME"])
def test_events_dir_of_the_config_folder_root_or_a_home_is_refused(write_config, tmp_path, directory):
    directory = {"CONFIG_DIR": str(tmp_path), "HOME": os.path.expanduser("~")}.get(directory, directory)
    path = write_config(cams(), events={"dir": directory})
    with pytest.raises(ConfigError, match=r"events\.dir: .*(config file's own folder|root of the file "
                                          r"system|home directory)"):
        load_config(path, env={})


@pytest.mark.parametrize("directory", ["events", "CONFIG_DIR/events", "~/framecast-events"])
def test_events_dir_of_its_own_is_accepted(write_config, tmp_path, directory):
    directory = directory.replace("CONFIG_DIR", str(tmp_path))
    assert load_config(write_config(cams(), events={"dir": directory}), env={}).events.dir == directory


def test_a_worker_with_events_dir_dot_exits_2_naming_the_field(write_config, tmp_path):
    notes = plant(tmp_path / "important-notes.txt")
    path = write_config(cams(), events={"dir": "."})
    proc = subprocess.run([sys.executable, "-m", "framecast", "worker", "--config", str(path)], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("FRAMECAST_")})
    assert proc.returncode == 2, proc.stderr
    assert "events.dir" in proc.stderr and "config file's own folder" in proc.stderr
    assert notes.read_text() == "not framecast's" and path.exists()
