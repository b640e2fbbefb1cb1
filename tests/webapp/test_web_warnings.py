"""The web app shows what a run warned of: a video that ended early, frames a node lost,
and refuses frames too small to hold a person. Through the real server (`runner.py
serve`), real uploads and real graph runs, urllib as the client."""
import html
import os
import re
import signal
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import processes_with
from test_webapp import CLIP, CLIP_FRAMES, Server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("web") / "jobs")
    yield server
    assert server.stop() == 0


def truncated_clip(folder: Path) -> bytes:
    """The clip as MJPG AVI (its header says 65 frames), cut after about a third."""
    capture = cv2.VideoCapture(str(CLIP))
    avi = folder / "whole.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 5, (720, 1280))
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        writer.write(frame)
    writer.release()
    data = avi.read_bytes()
    return data[: len(data) // 3]


def status_text(page: str) -> str:
    return re.search(r'<span id="status"[^>]*>([^<]*)</span>', page)[1]


def test_a_truncated_upload_is_done_with_a_warning_not_a_plain_100(server, tmp_path):
    status, job = server.upload(truncated_clip(tmp_path), "knn", "cut.avi")
    assert status == 201, job
    assert job["frames_total"] == CLIP_FRAMES  # what the container claims
    done = server.events(job["id"])[-1]
    assert done["state"] == "done", done
    read = done["frames_done"]
    assert 5 < read < CLIP_FRAMES
    warning = f"the video ended at frame {read} of {CLIP_FRAMES} (the file is truncated or corrupt)"
    assert done["warnings"] == [warning]
    assert done["message"] == f"done with warnings: {warning}"
    assert done["percent"] == read * 100 // CLIP_FRAMES < 100

    _, state = server.get_json(f"/api/jobs/{job['id']}")
    assert state["warnings"] == [warning] and state["percent"] < 100
    _, _, page = server.get(f"/jobs/{job['id']}")
    page = page.decode()
    assert html.unescape(status_text(page)) == f"done with warnings: {warning}"
    assert html.unescape(re.search(r'<ul id="warnings"[^>]*><li>warning: ([^<]*)</li></ul>', page)[1]) == warning
    assert f'<strong id="progress">{done["percent"]}%</strong>' in page
    _, _, listing = server.get("/")
    assert "done with warnings" in listing.decode()


def test_a_job_whose_video_sink_lost_frames_says_so(server):
    """The video sink is killed mid-job after its journal was removed: the restarted sink
    cannot have the earlier frames back, the runner ends with exit code 1 and a warning,
    and the job is done with that warning (its records are all there)."""
    status, job = server.upload(CLIP.read_bytes(), "knn", "pose_squats.mp4")
    assert status == 201, job
    folder = server.jobs_dir / job["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not ((folder / "records.jsonl").exists()
                                               and (folder / "records.jsonl").read_bytes().count(b"\n") >= 15):
        time.sleep(0.05)
    runner = processes_with(str(folder / "records.jsonl"))  # its command line names the job's files
    video = [pid for pid in processes_with("video.0.json") if _ppid(pid) in runner]
    assert len(video) == 1, "the job's video sink was not found"
    (folder / ".annotated.mp4.journal").unlink()
    os.kill(video[0], signal.SIGKILL)
    done = server.events(job["id"])[-1]
    assert done["state"] == "done" and done["exit_code"] == 1, done
    assert len(done["warnings"]) == 1 and re.fullmatch(r"node 'video' lost \d+ frame\(s\)", done["warnings"][0]), done
    assert done["message"] == "done with warnings: " + done["warnings"][0]
    assert done["frames_done"] == CLIP_FRAMES
    _, _, page = server.get(f"/jobs/{job['id']}")
    assert done["warnings"][0] in html.unescape(re.search(r'<ul id="warnings".*?</ul>', page.decode())[0])


def _ppid(pid: int) -> int:
    try:
        return int(next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("PPid:")).split()[1])
    except (OSError, StopIteration, ValueError):
        return -1


def test_a_video_of_1x1_frames_is_refused_saying_why(server, tmp_path):
    path = tmp_path / "dot.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (1, 1))
    for i in range(10):
        writer.write(np.full((1, 1, 3), 20 * i, np.uint8))
    writer.release()
    status, answer = server.upload(path.read_bytes(), "knn", "dot.avi")
    assert status == 400
    assert answer["error"] == ("the video's frames are 1x1 pixels, too small to hold a person; "
                               "frames must be at least 2x2 pixels (width x height)")
