"""The web app (`runner.py serve`): a real server process on a free port, real graph runs on the
bundled clip, urllib as the client."""
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import pytest

from conftest import ROOT, processes_with

CLIP = ROOT / "data" / "google_pose_reference" / "pose_squats.mp4"
CLIP_FRAMES = 65


class Server:
    """`runner.py serve --port 0` in its own process; the URL is read from its first line."""

    def __init__(self, jobs_dir: Path, *args: str):
        self.jobs_dir = jobs_dir
        self.log = open(jobs_dir.parent / f"server-{os.getpid()}-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "runner.py"), "serve", "--port", "0", "--jobs-dir", str(jobs_dir), *args],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else ""
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"server did not print its URL: {line!r}")
        self.url = match[0]

    def stop(self) -> int:
        """Ctrl-C, as a person would."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("the server did not stop within 20 s of Ctrl-C")
        self.log.close()
        return self.proc.returncode

    def get(self, path: str, headers=None):
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get_json(self, path: str):
        status, _, body = self.get(path)
        return status, json.loads(body)

    def upload(self, body: bytes, graph="knn", name="clip.mp4", headers=None, query=None):
        query = query if query is not None else urllib.parse.urlencode({"graph": graph, "name": name})
        request = urllib.request.Request(f"{self.url}/api/jobs?{query}", data=body, method="POST",
                                         headers={"Content-Type": "application/octet-stream", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def events(self, job_id: str, timeout=180) -> list[dict]:
        """Every server-sent event of a job until it is done or failed."""
        found = []
        with urllib.request.urlopen(f"{self.url}/api/jobs/{job_id}/events", timeout=timeout) as response:
            assert response.headers["Content-Type"] == "text/event-stream"
            for raw in response:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    found.append(json.loads(line[6:]))
                    if found[-1]["state"] in ("done", "failed"):
                        break
        return found


def tree(root: Path) -> dict:
    """Every file and folder under root, with file sizes (what a refused upload must not change)."""
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else "dir") for p in sorted(root.rglob("*")) if not p.name.startswith("server-")}


# ---- real jobs: one server, two uploads at once ----

@pytest.fixture(scope="module")
def queued_pair(tmp_path_factory):
    """Uploads the clip twice at once (knn, then lstm): the second must queue behind the first."""
    jobs_dir = tmp_path_factory.mktemp("web") / "jobs"
    server = Server(jobs_dir)
    clip = CLIP.read_bytes()
    status_a, first = server.upload(clip, "knn", "pose_squats.mp4")
    status_b, second = server.upload(clip, "lstm", "pose_squats copy.mp4")
    assert (status_a, status_b) == (201, 201), (first, second)
    _, second_while_first_runs = server.get_json(f"/api/jobs/{second['id']}")
    _, first_then = server.get_json(f"/api/jobs/{first['id']}")
    yield server, first, second, second_while_first_runs, first_then
    assert server.stop() == 0


def test_knn_upload_runs_to_result_page(queued_pair, tmp_path):
    server, first, _, _, _ = queued_pair
    assert first["graph"] == "knn" and first["frames_total"] == CLIP_FRAMES and re.fullmatch(r"[0-9a-f]{32}", first["id"])
    events = server.events(first["id"])
    assert events[-1]["state"] == "done", events[-1]
    assert events[-1]["percent"] == 100 and events[-1]["frames_done"] == CLIP_FRAMES
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents), percents
    assert any(0 < p < 100 for p in percents), f"no progress reported while running: {percents}"
    assert "running" in [e["state"] for e in events]

    status, _, page = server.get(f"/jobs/{first['id']}")
    assert status == 200
    page = page.decode()
    video = re.search(r'<video id="result-video"[^>]*\bsrc="([^"]+)"', page)
    assert video and "controls" in video[0] and video[1].endswith("/annotated.mp4")
    status, headers, mp4 = server.get(video[1])
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert b"avcC" in mp4 and mp4.find(b"moov") < mp4.find(b"mdat")  # H.264, its index first
    (tmp_path / "annotated.mp4").write_bytes(mp4)
    cap = cv2.VideoCapture(str(tmp_path / "annotated.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == CLIP_FRAMES

    svg = re.search(r'<svg id="timeline".*?</svg>', page, re.S)
    assert svg, "no timeline"
    legend = re.findall(r'<text[^>]*class="legend"[^>]*>([^<]+)</text>', svg[0])
    assert "squat" in legend
    assert 'class="reps-line"' in svg[0]

    reps_table = re.search(r'<table id="reps">.*?</table>', page, re.S)[0]
    shown = {name: int(count) for name, count in re.findall(r'data-class="([^"]+)">(\d+)</td>', reps_table)}
    jsonl_link = re.search(r'<a id="download-jsonl" href="([^"]+)"', page)[1]
    status, headers, body = server.get(jsonl_link)
    assert status == 200 and headers["Content-Disposition"].startswith("attachment")
    records = [json.loads(line) for line in body.decode().splitlines()]
    assert len(records) == CLIP_FRAMES
    assert shown == records[-1]["reps"] and shown["squat"] == 2, (shown, records[-1]["reps"])
    video_link = re.search(r'<a id="download-video" href="([^"]+)"', page)[1]
    status, headers, body = server.get(video_link)
    assert status == 200 and headers["Content-Disposition"].startswith("attachment") and body == mp4
    status, headers, part = server.get(video[1], {"Range": "bytes=0-99"})
    assert status == 206 and part == mp4[:100] and headers["Content-Range"] == f"bytes 0-99/{len(mp4)}"

    status, state = server.get_json(f"/api/jobs/{first['id']}")
    assert status == 200 and state["state"] == "done" and state["summary"]["reps"] == shown
    assert (server.jobs_dir / first["id"] / "input.mp4").read_bytes() == CLIP.read_bytes()


def test_second_upload_queues_behind_the_first(queued_pair):
    server, first, second, second_while_first_runs, first_then = queued_pair
    assert second["state"] == "queued" and second["position"] == 1, second
    assert first_then["state"] in ("queued", "running")
    assert second_while_first_runs["state"] == "queued" and second_while_first_runs["position"] == 1
    events = server.events(second["id"])
    assert events[-1]["state"] == "done", events[-1]
    assert events[-1]["percent"] == 100
    _, a = server.get_json(f"/api/jobs/{first['id']}")
    _, b = server.get_json(f"/api/jobs/{second['id']}")
    assert a["state"] == b["state"] == "done"
    assert b["started"] >= a["finished"], "the two jobs ran at the same time"
    _, _, page = server.get(f"/jobs/{second['id']}")
    svg = re.search(r'<svg id="timeline".*?</svg>', page.decode(), re.S)[0]
    assert "squat" in re.findall(r'<text[^>]*class="legend"[^>]*>([^<]+)</text>', svg)
    reps_table = re.search(r'<table id="reps">.*?</table>', page.decode(), re.S)[0]
    assert re.search(r'data-class="squat">2</td>', reps_table), reps_table  # the LSTM graph counts them too


def test_only_whitelisted_job_files_are_served(queued_pair):
    server, first, _, _, _ = queued_pair
    job = f"/jobs/{first['id']}"
    assert server.get(f"{job}/files/records.jsonl")[0] in (200, 404)  # 404 only before the file exists
    for path in (f"{job}/files/input.mp4", f"{job}/files/job.json", f"{job}/files/..%2F..%2Fsetup.cfg",
                 f"{job}/files/../../setup.cfg", "/jobs/../setup.cfg", f"/jobs/{'0' * 32}/files/records.jsonl",
                 "/jobs/" + first["id"][:-1] + "/files/records.jsonl", "/api/jobs/nothex", "/setup.cfg"):
        status, _, body = server.get(path)
        assert status == 404, (path, status)
        assert b"[metadata]" not in body


# ---- refused uploads ----

@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server with a 1 MB upload limit (the clip is 0.5 MB)."""
    root = tmp_path_factory.mktemp("refused")
    server = Server(root / "jobs", "--max-upload-mb", "1")
    yield server
    assert server.stop() == 0


REFUSED = {
    # case: (graph, name, body, status, words in the message)
    "text file named .mp4": ("knn", "notes.mp4", b"not a video, just text\n" * 200, 400, "not a video"),
    "empty file": ("knn", "empty.mp4", b"", 400, "empty"),
    "over the size limit": ("knn", "big.mp4", b"\0" * 1_500_000, 413, "limit is 1 MB"),
    "parent folder": ("knn", "../x.mp4", None, 400, "must not contain '/'"),
    "sub folder": ("knn", "a/b.mp4", None, 400, "must not contain '/'"),
    "absolute path": ("knn", "/tmp/x.mp4", None, 400, "must not contain '/'"),
    "NUL": ("knn", "x\0.mp4", None, 400, "control characters"),
    "backslashes": ("knn", "..\\..\\x.mp4", None, 400, "must not contain"),
    "hidden dots": ("knn", "x..mp4", None, 400, "'..'"),
    "hidden file": ("knn", ".x.mp4", None, 400, "hidden"),
    "extension not a video": ("knn", "clip.txt", None, 400, "accepted: .mp4"),
    "no name": ("knn", "", None, 400, "no file name"),
    "unknown graph": ("svm", "clip.mp4", None, 400, "unknown graph 'svm'"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_upload_is_refused(small_server, case):
    graph, name, body, status, words = REFUSED[case]
    root = small_server.jobs_dir.parent
    before = tree(root)
    got, answer = small_server.upload(CLIP.read_bytes() if body is None else body, graph, name)
    assert got == status, answer
    assert words in answer["error"], answer
    assert tree(root) == before, "a refused upload left something behind"
    assert small_server.get("/")[0] == 200


def raw_request(server: Server, head: str, body: bytes = b"", shut=False) -> tuple[int, dict]:
    """Send a hand-made request (lying or missing lengths) and read the answer."""
    host, port = urllib.parse.urlsplit(server.url).netloc.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_length_is_checked_before_reading_and_while_streaming(small_server):
    root = small_server.jobs_dir.parent
    before = tree(root)
    query = "/api/jobs?graph=knn&name=clip.mp4"
    # announced as 5 GB, nothing sent: refused from the header alone
    status, answer = raw_request(small_server, f"POST {query} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000000\r\n")
    assert status == 413 and "limit is 1 MB" in answer["error"]
    # no length at all (chunked)
    status, answer = raw_request(small_server, f"POST {query} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 411 and "Content-Length" in answer["error"]
    # a body shorter than announced: the partial file is removed
    status, answer = raw_request(small_server, f"POST {query} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n", CLIP.read_bytes()[:5000], shut=True)
    assert status == 400 and "stopped after 5000 of 100000 bytes" in answer["error"]
    # a page of another site posting to the app
    status, answer = small_server.upload(CLIP.read_bytes(), headers={"Origin": "http://evil.example"})
    assert status == 403 and "another site" in answer["error"]
    assert tree(root) == before
    assert small_server.get_json("/api/jobs") == (200, {"jobs": []})
    assert small_server.get("/")[0] == 200


# ---- Ctrl-C while a job runs ----

def test_ctrl_c_stops_the_running_job(tmp_path):
    server = Server(tmp_path / "jobs")
    try:
        status, job = server.upload(CLIP.read_bytes(), "knn", "pose_squats.mp4")
        assert status == 201
        job_dir = tmp_path / "jobs" / job["id"]
        deadline = time.monotonic() + 60
        runner = []
        while time.monotonic() < deadline and not runner:
            runner = processes_with(str(job_dir / "records.jsonl"))
            time.sleep(0.2)
        assert runner, "the job's runner never started"
        records = job_dir / "records.jsonl"
        while time.monotonic() < deadline and not (records.exists() and records.read_bytes().count(b"\n") >= 3):
            time.sleep(0.2)
        nodes = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == runner[0]]
        assert len(nodes) >= 5, "the graph's node processes are not all there"
    finally:
        code = server.stop()
    assert code == 0
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in runner + nodes):
        time.sleep(0.1)
    assert not [pid for pid in runner + nodes if _alive(pid)], "processes of the job outlived the server"
    state = json.loads((job_dir / "job.json").read_text())
    assert state["state"] == "failed" and "stopped" in state["message"]


def _ppid(proc: Path) -> int:
    try:
        return int(next(l for l in (proc / "status").read_text().splitlines() if l.startswith("PPid:")).split()[1])
    except (OSError, StopIteration):
        return -1


def _alive(pid: int) -> bool:
    try:
        state = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return "zombie" not in state


# ---- a failing run (the queue alone, with a stand-in for the runner) ----

def test_failed_run_reports_its_last_error_and_the_queue_goes_on(tmp_path):
    from posegraph.webapp.jobs import Job, JobQueue

    fake = tmp_path / "fake_python"   # stands in for `python runner.py ...`: fails once, then succeeds
    fake.write_text(f"#!/bin/sh\nif [ -f {tmp_path}/ok ]; then exit 0; fi\ntouch {tmp_path}/ok\n"
                    "echo \"graph 'video_knn' running\"\necho \"error: node 'pose' field 'params.model_complexity': broken\" >&2\n"
                    "echo 'stopped'\nexit 1\n")
    fake.chmod(0o755)
    queue = JobQueue(tmp_path / "jobs", python=str(fake), poll_s=0.05)
    queue.start()
    try:
        ids = []
        for _ in range(2):
            job_id, _ = queue.new_dir()
            queue.submit(Job(id=job_id, graph="knn", name="x.mp4", input="input.mp4", frames_total=10))
            ids.append(job_id)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and queue.get(ids[1])["state"] not in ("done", "failed"):
            time.sleep(0.05)
        first, second = queue.get(ids[0]), queue.get(ids[1])
        assert first["state"] == "failed"
        assert first["message"] == "error: node 'pose' field 'params.model_complexity': broken (runner exit code 1)"
        assert second["state"] == "done" and second["percent"] == 100
        assert "runner.log" in first["files"]
    finally:
        queue.stop()
    assert json.loads((tmp_path / "jobs" / ids[0] / "job.json").read_text())["state"] == "failed"
