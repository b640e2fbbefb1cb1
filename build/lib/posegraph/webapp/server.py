"""`posegraph serve`: the HTTP side of the web app (stdlib ThreadingHTTPServer, 127.0.0.1 by default).

Routes:
  GET  /                          upload page
  POST /api/jobs?graph=G&name=F   the video as the raw request body -> 201 {job}; 400/403/411/413/415 {"error"}
  POST /api/jobs                  or as multipart/form-data (curl -F file=@clip.mp4 -F graph=G): field `file`,
                                  optional `graph` and `name` (default: the file's own name), or in the query
  GET  /api/jobs                  every job, newest first
  GET  /api/jobs/ID               one job's state (and, when done, its summary: frames, classes, reps)
  GET  /api/jobs/ID/events        server-sent events: the job's state on every change, until done/failed
  GET  /jobs/ID                   result page (progress while the job is queued or running)
  GET  /jobs/ID/files/NAME        annotated.mp4, records.jsonl, metrics.json, runner.log (byte ranges;
                                  ?download=1 for an attachment); nothing else is ever served
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from posegraph.webapp import pages
from posegraph.webapp.jobs import FINAL, RESULT_FILES, Job, JobQueue
from posegraph.webapp.timeline import load_records, summary, timeline_svg
from posegraph.webapp.uploads import (Body, UploadError, check_graph, check_length, check_name, multipart_boundary,
                                      probe_video, receive, receive_multipart)

ID = r"([0-9a-f]{32})"
DRAIN_LIMIT = 64 << 20   # a refused body up to this size is read and discarded, so the client sees the answer
SSE_KEEPALIVE_S = 15.0


class Handler(BaseHTTPRequestHandler):
    server_version = "PoseGraph"
    timeout = 120  # seconds a client may stall mid-request

    @property
    def queue(self) -> JobQueue:
        return self.server.queue

    # ---- routing ----

    def do_GET(self):
        self._guarded(self._get)

    def do_POST(self):
        self._guarded(self._post)

    def _guarded(self, route) -> None:
        """A bug in one request answers 500 and is logged; the server goes on."""
        try:
            route()
        except Exception:
            import traceback

            traceback.print_exc()
            self.close_connection = True
            try:
                self._json(500, {"error": "internal error (see the server's log)"})
            except Exception:
                pass

    def _get(self):
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        if path == "/":
            return self._send(200, pages.upload_page(self.queue.list_jobs(), self.server.max_bytes), "text/html; charset=utf-8")
        if path == "/api/jobs":
            return self._json(200, {"jobs": self.queue.list_jobs()})
        if m := re.fullmatch(rf"/api/jobs/{ID}", path):
            return self._job_json(m[1])
        if m := re.fullmatch(rf"/api/jobs/{ID}/events", path):
            return self._events(m[1])
        if m := re.fullmatch(rf"/jobs/{ID}", path):
            return self._result_page(m[1])
        if m := re.fullmatch(rf"/jobs/{ID}/files/([A-Za-z0-9._-]+)", path):
            return self._file(m[1], m[2], query.get("download") == ["1"])
        if path.startswith("/api/"):
            return self._json(404, {"error": "no such resource"})
        return self._send(404, pages.not_found_page("no such page"), "text/html; charset=utf-8")

    def _post(self):
        url = urlsplit(self.path)
        if url.path != "/api/jobs":
            self._drain()
            return self._json(404, {"error": "no such resource"})
        try:
            self._create(url.query)
        except UploadError as exc:
            self._json(exc.status, {"error": exc.message})

    # ---- uploads ----

    def _create(self, query: str) -> None:
        try:
            try:
                params = parse_qs(query, keep_blank_values=True, max_num_fields=8)
            except ValueError:
                raise UploadError("too many query parameters") from None
            for key, values in params.items():
                if len(values) > 1:
                    raise UploadError(f"query parameter {key!r} is given more than once")
            boundary = multipart_boundary(self.headers.get("Content-Type"))
            if boundary is None:
                graph = check_graph(params.get("graph", [""])[0])
                name = params.get("name", [""])[0]
                ext = check_name(name)
            else:   # a form: what its query says is checked now, what the form says once it is read
                for key, check in (("graph", check_graph), ("name", check_name)):
                    if key in params:
                        check(params[key][0])
            self._check_origin()
            length = check_length(self.headers.get("Content-Length"), self.server.max_bytes,
                                  chunked="chunked" in self.headers.get("Transfer-Encoding", "").lower(),
                                  multipart=boundary is not None)
        except UploadError:
            self._drain()   # nothing of the body is kept; reading it lets the client read our answer
            raise
        if boundary is not None:
            return self._create_from_form(params, boundary, length)
        job_id, folder = self.queue.new_dir()
        target = folder / f"input{ext}"
        try:
            receive(self.rfile, length, target, self.server.max_bytes)
            frames = probe_video(target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)   # a refused upload leaves nothing behind
            raise
        job = self.queue.submit(Job(id=job_id, graph=graph, name=name, input=target.name, frames_total=frames))
        self._json(201, job, {"Location": job["url"]})

    def _create_from_form(self, params: dict, boundary: str, length: int) -> None:
        """A multipart/form-data upload: the `file` part streams to disk; `graph` and `name`
        come from the form or the query (not both); the name defaults to the file's own."""
        job_id, folder = self.queue.new_dir()
        body = Body(self.rfile, length)
        try:
            try:
                fields, filename, _ = receive_multipart(body, boundary, folder / "upload.part", self.server.max_bytes)
            except UploadError:
                self._drain(body.left)   # the rest of a refused form, so the client reads the answer
                raise
            for key in ("graph", "name"):
                if key in fields and key in params:
                    raise UploadError(f"{key!r} is given twice, in the query and in the form")
            graph = check_graph(fields.get("graph", params.get("graph", [""])[0]))
            name = fields.get("name", params.get("name", [filename or ""])[0])
            if not name:
                raise UploadError("the form's file has no file name (curl -F file=@clip.mp4 sends it; or add -F name=clip.mp4)")
            ext = check_name(name)
            target = folder / f"input{ext}"
            (folder / "upload.part").rename(target)
            frames = probe_video(target)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)   # a refused upload leaves nothing behind
            raise
        job = self.queue.submit(Job(id=job_id, graph=graph, name=name, input=target.name, frames_total=frames))
        self._json(201, job, {"Location": job["url"]})

    def _check_origin(self) -> None:
        """Refuse uploads posted by pages of other sites (the browser sends their Origin)."""
        origin = self.headers.get("Origin")
        if origin and origin != "null" and urlsplit(origin).netloc != self.headers.get("Host", ""):
            raise UploadError(f"uploads from another site ({origin}) are refused", 403)

    def _drain(self, left: int | None = None) -> None:
        """Read and discard a refused request's body (up to DRAIN_LIMIT; `left`: what is still
        unread of a body read in part), so that closing the connection does not reset it
        before the client has read the answer."""
        self.close_connection = True
        chunked = left is None and "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        try:
            if left is None:
                left = DRAIN_LIMIT if chunked else int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if left <= 0 or left > DRAIN_LIMIT:
            return
        try:
            self.connection.settimeout(0.5 if chunked else 5)  # a chunked body: read what has come
            while left > 0:
                data = self.rfile.read1(min(left, 1 << 20)) if chunked else self.rfile.read(min(left, 1 << 20))
                if not data:
                    break
                left -= len(data)
        except OSError:
            pass

    # ---- jobs ----

    def _job_json(self, job_id: str) -> None:
        job = self.queue.get(job_id)
        if job is None:
            return self._json(404, {"error": f"no job {job_id}"})
        if job["state"] == "done":
            job["summary"] = summary(load_records(self.queue.job_dir(job_id) / "records.jsonl"))
        self._json(200, job)

    def _result_page(self, job_id: str) -> None:
        job = self.queue.get(job_id)
        if job is None:
            return self._send(404, pages.not_found_page(f"no job {job_id}"), "text/html; charset=utf-8")
        info = svg = None
        if job["state"] == "done":
            records = load_records(self.queue.job_dir(job_id) / "records.jsonl")
            info, svg = summary(records), timeline_svg(records)
        self._send(200, pages.result_page(job, info, svg), "text/html; charset=utf-8")

    def _events(self, job_id: str) -> None:
        if self.queue.get(job_id) is None:
            return self._json(404, {"error": f"no job {job_id}"})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Accel-Buffering", "no")
        self.end_headers()
        seen, last, wrote = -1, None, time.monotonic()
        try:
            self.wfile.write(b"retry: 2000\n\n")
            while not self.queue.stopping.is_set():
                seen, job = self.queue.wait_change(job_id, seen, SSE_KEEPALIVE_S)
                if job is None:
                    break
                if job != last:
                    self.wfile.write(f"data: {json.dumps(job)}\n\n".encode())
                    last, wrote = job, time.monotonic()
                    if job["state"] in FINAL:
                        break
                elif time.monotonic() - wrote >= SSE_KEEPALIVE_S:
                    self.wfile.write(b": keep-alive\n\n")
                    wrote = time.monotonic()
        except OSError:
            pass  # the browser went away
        self.close_connection = True

    def _file(self, job_id: str, name: str, download: bool) -> None:
        if name not in RESULT_FILES or self.queue.get(job_id) is None:
            return self._json(404, {"error": "no such file"})
        path = self.queue.job_dir(job_id) / name
        if path.is_symlink() or not path.is_file():
            return self._json(404, {"error": f"{name} is not there (yet)"})
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        wanted = self.headers.get("Range")
        if wanted and not download:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if m and (m[1] or m[2]):
                if m[1]:
                    start, end = int(m[1]), min(int(m[2]), size - 1) if m[2] else size - 1
                else:
                    start = max(0, size - int(m[2]))
                if start >= size or start > end:
                    return self._send(416, b"", "text/plain", {"Content-Range": f"bytes */{size}"})
                status = 206
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        if download:
            headers["Content-Disposition"] = f'attachment; filename="{name}"'
        try:
            self.send_response(status)
            self.send_header("Content-Type", RESULT_FILES[name])
            self.send_header("Content-Length", str(end - start + 1 if size else 0))
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            with open(path, "rb") as f:
                f.seek(start)
                left = end - start + 1 if size else 0
                while left > 0:
                    data = f.read(min(left, 1 << 20))
                    if not data:
                        break
                    self.wfile.write(data)
                    left -= len(data)
        except OSError:
            pass

    # ---- answers ----

    def _send(self, status: int, body: bytes, content_type: str, headers: dict | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            self.close_connection = True  # the client went away

    def _json(self, status: int, data, headers: dict | None = None) -> None:
        self._send(status, json.dumps(data).encode(), "application/json", headers)

    def log_message(self, format, *args):  # noqa: A002 (the stdlib's name)
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, queue: JobQueue, max_bytes: int):
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.queue, self.max_bytes = queue, max_bytes
        super().__init__(address, Handler)
