"""The web app's API as README.md's "Web app API" section shows it: its curl commands, taken
from README.md by their marker and run as they stand against a real server (`runner.py
serve`) on the bundled clip; uploads as a form (multipart/form-data) as well as the raw body,
with the same refusals; and the timeline's "warming up" for frames where a person was found
but the classifier has no answer yet."""
import io
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import cv2
import pytest

from conftest import ROOT
from test_webapp import CLIP, CLIP_FRAMES, Server, raw_request, tree

README = ROOT / "README.md"
MARKER = "<!-- web-api-commands"
CURL = shutil.which("curl")


def readme_commands() -> str:
    """The ```sh block between the web-api-commands markers of README.md."""
    text = README.read_text()
    start = text.find(MARKER)
    assert start >= 0, f"README.md has no {MARKER} marker"
    end = text.find("<!-- web-api-commands end -->", start)
    block = re.search(r"```sh\n(.*?)```", text[start:end], re.S)
    assert block, "no ```sh block after the web-api-commands marker"
    return block[1]


# ---- README's commands against a real server ----

@pytest.fixture(scope="module")
def api_run(tmp_path_factory):
    """Runs README's commands once, from a folder holding the clip where the README says it is."""
    if CURL is None:
        pytest.skip("curl is not installed (the README's commands need it): apt-get install curl")
    root = tmp_path_factory.mktemp("api")
    server = Server(root / "jobs")
    try:
        work = root / "work"
        (work / CLIP.parent.relative_to(ROOT)).mkdir(parents=True)
        (work / CLIP.relative_to(ROOT)).symlink_to(CLIP)
        script, count = re.subn(r"^URL=\S+$", f"URL={server.url}", readme_commands(), count=1, flags=re.M)
        assert count == 1, "README's block no longer sets URL= on a line of its own"
        env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                             capture_output=True, text=True, timeout=180)
        yield server, work, run
    finally:
        server.stop()


def test_readme_commands_upload_both_ways_and_download(api_run):
    server, work, run = api_run
    assert run.returncode == 0, f"README's commands failed:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    form, raw = json.loads((work / "form.json").read_text()), json.loads((work / "raw.json").read_text())
    assert "error" not in form and "error" not in raw, (form, raw)
    assert (form["graph"], form["name"], form["input"], form["frames_total"]) == ("dtw", "pose_squats.mp4", "input.mp4", CLIP_FRAMES)
    assert (raw["graph"], raw["name"], raw["frames_total"]) == ("lstm", "pose_squats.mp4", CLIP_FRAMES)
    assert raw["state"] == "queued" and raw["position"] == 1, raw   # behind the form's job
    for job in (form, raw):   # both forms of upload store the clip byte for byte
        assert (server.jobs_dir / job["id"] / "input.mp4").read_bytes() == CLIP.read_bytes()

    # the event stream: one data line per change, percent never going back, ending done at 100 %
    events = [json.loads(line[6:]) for line in run.stdout.splitlines() if line.startswith("data: ")]
    assert events and all(e["id"] == raw["id"] for e in events)
    assert events[-1]["state"] == "done" and events[-1]["percent"] == 100, events[-1]
    percents = [e["percent"] for e in events]
    assert percents == sorted(percents), percents

    job = json.loads((work / "job.json").read_text())
    assert job["state"] == "done" and job["summary"]["frames"] == CLIP_FRAMES
    assert job["summary"]["reps"]["squat"] == 2, job["summary"]
    assert "records.jsonl" in job["files"] and "runner.log" in job["files"]
    videos = [name for name in job["files"] if name.startswith("annotated.")]
    assert len(videos) == 1, job["files"]
    for name in job["files"]:   # every listed file downloaded, under its own name, as the server has it
        assert (work / name).read_bytes() == (server.jobs_dir / raw["id"] / name).read_bytes(), name
    records = [json.loads(line) for line in (work / "records.jsonl").read_text().splitlines()]
    assert len(records) == CLIP_FRAMES and records[-1]["reps"] == job["summary"]["reps"]
    cap = cv2.VideoCapture(str(work / videos[0]))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == CLIP_FRAMES

    page = (work / "result.html").read_text()
    video = re.search(r'<video id="result-video"[^>]*\bsrc="([^"]+)"', page)
    assert video and video[1] == job["files"][videos[0]], (video and video[1], job["files"])

    status, done = server.get_json(f"/api/jobs/{form['id']}")   # the form's job ran first, to its end
    assert status == 200 and done["state"] == "done" and done["finished"] <= job["started"]


def timeline_rows(page: str) -> list[list[tuple[int, int, str]]]:
    """The timeline's band rows: each a list of (first frame, last frame, label)."""
    svg = re.search(r'<svg id="timeline".*?</svg>', page, re.S)[0]
    rows = []
    for first, last, label in re.findall(r"<title>frames (\d+)-(\d+): ([^<]+)</title>", svg):
        if first == "0":
            rows.append([])
        rows[-1].append((int(first), int(last), label))
    return rows


@pytest.mark.parametrize("upload", ["form", "raw"])
def test_warm_up_frames_are_not_no_pose(api_run, upload):
    """DTW (uploaded as a form) and LSTM (raw): the first frames have a person but no answer yet."""
    server, work, run = api_run
    assert run.returncode == 0, run.stderr[-2000:]
    job_id = json.loads((work / f"{upload}.json").read_text())["id"]
    assert server.events(job_id)[-1]["state"] == "done"
    records = [json.loads(line) for line in (server.jobs_dir / job_id / "records.jsonl").read_text().splitlines()]
    status, _, page = server.get(f"/jobs/{job_id}")
    assert status == 200
    rows = timeline_rows(page.decode())
    assert len(rows) == 2, rows   # class, and the classifier's own answer
    for row, key in zip(rows, ("class", "label")):
        shown = [label for first, last, label in row for _ in range(first, last + 1)]
        assert len(shown) == len(records)
        for i, (rec, label) in enumerate(zip(records, shown)):
            if rec[key] is not None:
                assert label == rec[key], (key, i, label, rec[key])
            else:
                assert label == ("warming up" if rec["landmarks"] else "no pose"), (key, i, label)
        assert shown[0] == "warming up", row[:3]
        assert "no pose" not in shown   # the clip has a person in every frame
    _, job = server.get_json(f"/api/jobs/{job_id}")
    assert job["summary"]["classes"]["warming up"] == sum(rec["class"] is None for rec in records) > 0
    assert "no pose" not in job["summary"]["classes"]
    assert re.search(r'<td>warming up</td><td>\d+</td>', page.decode())


def test_timeline_no_pose_only_without_a_person(tmp_path):
    from posegraph.webapp.timeline import load_records, summary, timeline_svg

    lines = [{"pts_ms": 0, "landmarks": None, "class": None, "label": None, "reps": None},
             {"pts_ms": 100, "landmarks": [[1, 2, 0, 1]] * 33, "class": None, "label": None, "reps": None},
             {"pts_ms": 200, "landmarks": [[1, 2, 0, 1]] * 33, "class": "squat", "label": None, "reps": None},
             {"pts_ms": 300, "landmarks": None, "people": [{"id": 0, "landmarks": [[1, 2, 0, 1]] * 17}],
              "class": None, "label": None, "reps": None}]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    records = load_records(path)
    assert summary(records)["classes"] == {"no pose": 1, "warming up": 2, "squat": 1}
    svg = timeline_svg(records)
    assert re.findall(r"<title>([^<]+)</title>", svg) == ["frames 0-0: no pose", "frames 1-1: warming up",
                                                        "frames 2-2: squat", "frames 3-3: warming up"]


# ---- form uploads: the same refusals as raw ones ----

BOUNDARY = "----posegraph-test-7f3a"


def form(*parts, boundary=BOUNDARY) -> tuple[bytes, dict]:
    """A multipart/form-data body of (field, filename or None, data) parts, and its header."""
    body = b""
    for field, filename, data in parts:
        disposition = f'form-data; name="{field}"' + ("" if filename is None else f'; filename="{filename}"')
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += (b"Content-Type: video/mp4\r\n" if filename is not None else b"") + b"\r\n" + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory):
    """A server with a 1 MB upload limit (the clip is 0.5 MB); only refusals reach it."""
    server = Server(tmp_path_factory.mktemp("form") / "jobs", "--max-upload-mb", "1")
    yield server
    assert server.stop() == 0


CLIP_BYTES = CLIP.read_bytes()
FORM_REFUSED = {
    # case: (parts, query, status, words in the message)
    "text file named .mp4": ([("file", "notes.mp4", b"just text\n" * 200), ("graph", None, b"knn")], "", 400, "not a video"),
    "empty file": ([("file", "empty.mp4", b""), ("graph", None, b"knn")], "", 400, "empty"),
    "over the limit, told by the length": ([("file", "big.mp4", b"\0" * 1_500_000), ("graph", None, b"knn")], "", 413, "limit is 1 MB"),
    "over the limit, counted while streaming": ([("file", "big.mp4", b"\0" * 1_010_000), ("graph", None, b"knn")], "", 413, "limit is 1 MB"),
    "parent folder": ([("file", "../x.mp4", CLIP_BYTES), ("graph", None, b"knn")], "", 400, "must not contain '/'"),
    "name field with a path": ([("file", "x.mp4", CLIP_BYTES), ("name", None, b"/tmp/x.mp4"), ("graph", None, b"knn")], "", 400, "must not contain '/'"),
    "extension not a video": ([("file", "clip.txt", CLIP_BYTES), ("graph", None, b"knn")], "", 400, "accepted: .mp4"),
    "no file name": ([("file", "", CLIP_BYTES), ("graph", None, b"knn")], "", 400, "no file name"),
    "unknown graph": ([("file", "clip.mp4", CLIP_BYTES), ("graph", None, b"svm")], "", 400, "unknown graph 'svm'"),
    "unknown graph in the query": ([("file", "clip.mp4", CLIP_BYTES)], "graph=svm", 400, "unknown graph 'svm'"),
    "graph twice": ([("file", "clip.mp4", CLIP_BYTES), ("graph", None, b"knn")], "graph=knn", 400, "given twice"),
    "no file field": ([("graph", None, b"knn")], "", 400, "no 'file' field"),
    "two files": ([("file", "a.mp4", CLIP_BYTES), ("file", "b.mp4", CLIP_BYTES), ("graph", None, b"knn")], "", 400, "more than once"),
    "unknown field": ([("upload", "clip.mp4", CLIP_BYTES), ("graph", None, b"knn")], "", 400, "unknown form field 'upload'"),
}


@pytest.mark.parametrize("case", list(FORM_REFUSED))
def test_bad_form_upload_is_refused(small_server, case):
    parts, query, status, words = FORM_REFUSED[case]
    root = small_server.jobs_dir.parent
    before = tree(root)
    body, headers = form(*parts)
    got, answer = small_server.upload(body, headers=headers, query=query)
    assert got == status, answer
    assert words in answer["error"], answer
    assert tree(root) == before, "a refused upload left something behind"
    assert small_server.get("/")[0] == 200


def test_form_length_and_framing_are_checked(small_server):
    root = small_server.jobs_dir.parent
    before = tree(root)
    body, headers = form(("file", "clip.mp4", CLIP_BYTES), ("graph", None, b"knn"))
    head = f"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: {headers['Content-Type']}\r\n"
    # cut short: the partial file is removed
    status, answer = raw_request(small_server, head + "Content-Length: 600000\r\n", body[:5000], shut=True)
    assert status == 400 and "stopped after 5000 of 600000 bytes" in answer["error"]
    # no length (chunked)
    status, answer = raw_request(small_server, head + "Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 411 and "Content-Length" in answer["error"]
    # no closing boundary
    status, answer = raw_request(small_server, head + f"Content-Length: {len(body) - 40}\r\n", body[:-40])
    assert status == 400 and "closing boundary" in answer["error"]
    # a multipart type without a boundary, and one that is not a form
    status, answer = small_server.upload(body, headers={"Content-Type": "multipart/form-data"}, query="")
    assert status == 400 and "boundary" in answer["error"]
    status, answer = small_server.upload(body, headers={"Content-Type": f"multipart/mixed; boundary={BOUNDARY}"}, query="")
    assert status == 415 and "multipart/form-data" in answer["error"]
    # another site's page
    status, answer = small_server.upload(body, headers={**headers, "Origin": "http://evil.example"}, query="")
    assert status == 403 and "another site" in answer["error"]
    assert tree(root) == before
    assert small_server.get_json("/api/jobs") == (200, {"jobs": []})


def test_form_parser_streams_any_split_and_keeps_the_bytes(tmp_path):
    """The parser alone: chunks far smaller than the boundary, a preamble and an epilogue,
    data that almost holds the delimiter, a field after the file, RFC 2231 file names."""
    from posegraph.webapp.uploads import Body, UploadError, receive_multipart

    data = (b"\r\n--" + BOUNDARY[:-1].encode() + b"x\r\n-- \r\n--" + BOUNDARY.encode()[:10]) * 50 + bytes(range(256)) * 20
    body, _ = form(("file", "clip.mp4", data), ("graph", None, b"dtw"))
    body = b"a preamble to ignore\r\n" + body + b"an epilogue to ignore"
    for chunk in (1, 3, 7, 64, 1 << 20):
        dest = tmp_path / f"upload-{chunk}"
        fields, filename, size = receive_multipart(Body(io.BytesIO(body), len(body), chunk), BOUNDARY, dest, 1 << 20)
        assert (fields, filename, size) == ({"graph": "dtw"}, "clip.mp4", len(data))
        assert dest.read_bytes() == data
    encoded = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=file; filename*=UTF-8''%C3%BCbung.mp4\r\n\r\nxyz\r\n"
               f"--{BOUNDARY}--").encode()
    fields, filename, _ = receive_multipart(Body(io.BytesIO(encoded), len(encoded), 5), BOUNDARY, tmp_path / "u", 1 << 20)
    assert filename == "übung.mp4" and (tmp_path / "u").read_bytes() == b"xyz"
    with pytest.raises(UploadError, match="limit is 0.0001 MB") as refused:
        receive_multipart(Body(io.BytesIO(body), len(body), 64), BOUNDARY, tmp_path / "big", 100)
    assert refused.value.status == 413 and not (tmp_path / "big").exists()


def test_an_upload_that_names_no_graph_gets_the_default_one():
    from posegraph.webapp.uploads import GRAPHS, check_graph

    assert check_graph("") == check_graph(None) == "dtw" == next(iter(GRAPHS))
