"""The live view of a running graph in a browser: the HTTP server the `web` node starts.

While the graph runs, http://HOST:PORT/ shows the annotated stream(s) as MJPEG, the
runner's per-node metrics table (refreshed once a second) and the graph drawn as a
picture. Everything is served from a daemon thread of the node's own process
(http.server.ThreadingHTTPServer); the page is plain HTML, CSS and JavaScript with no
external assets, so it works offline.

URLs
  /                     the page
  /stream/NAME.mjpg     MJPEG (multipart/x-mixed-replace) of stream NAME (its source node's id)
  /snapshot/NAME.jpg    the latest JPEG of stream NAME (404 until the first one)
  /frames.json          {NAME: {"frames": JPEGs made, "seq": last seq shown, "received":
                        frames that reached the node, "width", "height"}}
  /metrics.json         the runner's live table: {"graph", "machine", "nodes": {id: {...}},
                        "kinds": {id: kind}} ({} until the runner wrote it once)
  /graph.png            the graph file, drawn at start (posegraph.draw.draw_graph)

`LiveView.offer` only encodes a JPEG (at most `max_fps` per stream; frames between are
skipped for the view only) and stores it under a lock; client threads wait on a condition
and send the newest JPEG when it changes, so a slow browser only misses frames and never
holds up the graph. `close` wakes every client, stops the server and returns at once.
The server has no authentication: keep it on 127.0.0.1 unless the network is yours.
"""
from __future__ import annotations

import errno
import html
import json
import os
import shutil
import socket
import socketserver
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np

from posegraph.pose.drawing import as_bgr

BOUNDARY = "posegraph-frame"


class ListenError(Exception):
    """The server cannot listen; str() is one line, `param` says whether the "host" or the
    "port" is at fault, `in_use` that another program holds the port."""

    def __init__(self, message: str, param: str, in_use: bool = False):
        super().__init__(message)
        self.param = param
        self.in_use = in_use


class _View:
    """The newest JPEG of one stream and how many came."""

    __slots__ = ("jpeg", "seq", "frames", "received", "width", "height")

    def __init__(self):
        self.jpeg = None
        self.seq = -1
        self.frames = 0      # JPEGs made (the version MJPEG clients wait for)
        self.received = 0    # frames with an image that reached the view
        self.width = self.height = 0


class _Hub:
    """What `offer` shares with the server threads: one lock, one condition."""

    def __init__(self, names: list[str]):
        self.cond = threading.Condition()
        self.views: dict[str, _View] = {name: _View() for name in names}
        self.closed = False

    def frames(self) -> dict:
        with self.cond:
            return {name: {"frames": v.frames, "seq": v.seq, "received": v.received, "width": v.width, "height": v.height}
                    for name, v in self.views.items()}


class _Server(ThreadingHTTPServer):
    daemon_threads = True          # a client thread never keeps the process alive
    allow_reuse_address = True     # a port in TIME_WAIT is free; one with a listener is not (Linux)
    request_queue_size = 64

    def server_bind(self):
        # HTTPServer.server_bind looks the host's name up (getfqdn), which can hang offline
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server_version = "posegraph-web"
    timeout = 10  # a client that stops reading gets its socket write timed out, not forever
    live: "LiveView" = None  # set on the subclass made per view

    def log_message(self, format, *args):  # no line per request on the runner's terminal
        pass

    def do_GET(self):
        live = self.live
        path = urllib.parse.urlsplit(self.path).path
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", live.page)
            elif path == "/frames.json":
                self._send_json(live.hub.frames())
            elif path == "/metrics.json":
                self._send_json(live.metrics())
            elif path == "/graph.png":
                if live.graph_png is None:
                    self._send(404, "text/plain; charset=utf-8", f"no picture of the graph: {live.graph_problem}\n".encode())
                else:
                    self._send(200, "image/png", live.graph_png)
            elif path.startswith("/stream/") and path.endswith(".mjpg"):
                self._mjpeg(urllib.parse.unquote(path[len("/stream/"):-len(".mjpg")]))
            elif path.startswith("/snapshot/") and path.endswith(".jpg"):
                self._snapshot(urllib.parse.unquote(path[len("/snapshot/"):-len(".jpg")]))
            elif path == "/favicon.ico":
                self._send(204, "image/x-icon", b"")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found; try / /frames.json /metrics.json /graph.png\n")
        except (BrokenPipeError, ConnectionResetError, socket.timeout, TimeoutError):
            pass  # the browser went away

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, value) -> None:
        self._send(200, "application/json", json.dumps(value, allow_nan=False, default=_plain).encode())

    def _snapshot(self, name: str) -> None:
        hub = self.live.hub
        with hub.cond:
            view = hub.views.get(name)
            jpeg = view.jpeg if view else None
        if jpeg is None:
            self._send(404, "text/plain; charset=utf-8", f"no frame of stream {name!r} yet\n".encode())
        else:
            self._send(200, "image/jpeg", jpeg)

    def _mjpeg(self, name: str) -> None:
        hub = self.live.hub
        with hub.cond:
            known = name in hub.views
        if not known:
            self._send(404, "text/plain; charset=utf-8",
                       f"no stream {name!r}; streams: {', '.join(sorted(hub.views)) or 'none yet'}\n".encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            with hub.cond:
                # wake on a new JPEG or on close; the timeout only re-checks `closed`
                hub.cond.wait_for(lambda: hub.closed or hub.views[name].frames != sent, timeout=1.0)
                if hub.closed:
                    return
                view = hub.views[name]
                if view.frames == sent or view.jpeg is None:
                    continue
                jpeg, sent = view.jpeg, view.frames
            # written outside the lock: a slow client holds up only its own thread
            self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                             + jpeg + b"\r\n")
            self.wfile.flush()


def _plain(value):
    """json.dumps default: numpy numbers as plain ones."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def draw_graph_png(graph_file: str) -> tuple[bytes | None, str]:
    """The graph file drawn as a PNG (bytes), or None and why not."""
    if not graph_file:
        return None, "the engine did not say which graph file runs"
    folder = tempfile.mkdtemp(prefix="posegraph-web-")
    try:
        from posegraph.draw import draw_graph
        from posegraph.spec import load_graph

        png = os.path.join(folder, "graph.png")
        draw_graph(load_graph(graph_file), png)
        with open(png, "rb") as f:
            return f.read(), ""
    except Exception as exc:  # a picture is a nicety: say why there is none, keep serving
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _bind(host: str, port: int, handler) -> _Server:
    """The server listening on host:port; ListenError in one line naming host or port."""
    try:
        return (_Server6 if ":" in host else _Server)((host, port), handler)
    except socket.gaierror as exc:
        raise ListenError(f"cannot listen on {host!r}: not an address of this machine ({exc.strerror or exc})", "host") from None
    except OverflowError as exc:
        raise ListenError(f"cannot listen on port {port}: {exc}", "port") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ListenError(f"cannot listen on {host}:{port}: the port is already in use (another program, or "
                              "another graph's web node); free it or choose another", "port", in_use=True) from None
        if exc.errno == errno.EACCES:
            raise ListenError(f"cannot listen on {host}:{port}: permission denied (ports below 1024 need "
                              "privileges); choose a port from 1024 up", "port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ListenError(f"cannot listen on {host}:{port}: {host} is not an address of this machine; "
                              "127.0.0.1 (this machine only) or 0.0.0.0 (every interface) work", "host") from None
        raise ListenError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "port") from None


class LiveView:
    """The page, its server thread, and the newest JPEG of every stream.

    `names` are the streams known at start (one <img> each; a stream offered later gets
    one added by the page). `metrics` returns the runner's live table; `log` takes the
    one-line warning when the graph cannot be drawn. JPEGs are made at most `max_fps`
    times a second per stream (0: every frame). ListenError when the port cannot be had.
    """

    def __init__(self, host: str, port: int, names: list[str], graph_file: str = "", max_fps: float = 15.0,
                 quality: int = 80, metrics: Callable[[], dict] = dict, log: Callable[[str], None] = print):
        import cv2

        self.cv2 = cv2
        self.metrics = metrics
        self.hub = _Hub(names)
        self.period = 1.0 / max_fps if max_fps > 0 else 0.0
        self.due: dict[str, float] = {}
        self.encode_args = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]
        self.graph_png, self.graph_problem = draw_graph_png(graph_file)
        if self.graph_png is None and graph_file:
            log(f"warning: cannot draw {graph_file}: {self.graph_problem}")
        self.page = _page(names, graph_file, max_fps).encode()
        self.thread = None
        self.server = _bind(host, port, type("LiveHandler", (_Handler,), {"live": self}))
        self.port = self.server.server_address[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                       name="web-server", daemon=True)
        self.thread.start()

    def offer(self, name: str, seq: int, image: np.ndarray) -> str | None:
        """A frame of stream `name` (a uint8 image): shown when due. None when it became the
        stream's JPEG, else why not ("view_skipped": too soon after the last one;
        "bad_frames": it cannot be encoded)."""
        hub = self.hub
        with hub.cond:
            view = hub.views.get(name)
            if view is None:  # a stream not known at start
                view = hub.views[name] = _View()
            view.received += 1
        now = time.monotonic()
        due = self.due.get(name, 0.0)
        if now < due:
            return "view_skipped"
        # keep the cadence (a graph at exactly max_fps is not halved by jitter), no bursts after a pause
        self.due[name] = max(due + self.period, now) if self.period else 0.0
        image = as_bgr(image)
        ok, buf = self.cv2.imencode(".jpg", image, self.encode_args)
        if not ok:
            return "bad_frames"
        jpeg = buf.tobytes()
        with hub.cond:  # never waits on a client: they copy the reference and write outside the lock
            view.jpeg, view.seq = jpeg, seq
            view.frames += 1
            view.height, view.width = image.shape[:2]
            hub.cond.notify_all()
        return None

    def close(self) -> None:
        with self.hub.cond:
            self.hub.closed = True  # every MJPEG client returns
            self.hub.cond.notify_all()
        server, self.server = self.server, None
        if server is not None:
            if self.thread is not None and self.thread.is_alive():
                server.shutdown()  # the accept loop stops within its 0.1 s poll
            server.server_close()


def _js_string(value) -> str:
    """A value as a JavaScript literal that is safe inside <script>."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _page(names: list[str], graph_file: str, max_fps: float) -> str:
    imgs = "\n".join(_stream_html(name) for name in names)
    return (_PAGE.replace("@IMGS@", imgs)
            .replace("@TITLE@", html.escape(os.path.basename(graph_file) or "graph"))
            .replace("@GRAPHFILE@", html.escape(graph_file or "?"))
            .replace("@MAXFPS@", html.escape(f"{max_fps:g}" if max_fps else "every frame"))
            .replace("@NAMES@", _js_string(names)))


def _stream_html(name: str) -> str:
    q, h = urllib.parse.quote(name, safe=""), html.escape(name, quote=True)
    return (f'<figure class="stream" data-stream="{h}"><img data-stream="{h}" src="/stream/{q}.mjpg" alt="stream {h}">'
            f'<figcaption>{h} <span class="count" data-stream="{h}"></span></figcaption></figure>')


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PoseGraph live: @TITLE@</title>
<style>
  :root { color-scheme: dark; --bg: #15181c; --panel: #1f242a; --line: #333a42; --text: #e4e7eb; --dim: #8b949e; --ok: #5cc46c; --bad: #e5534b; }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, sans-serif; }
  header { display: flex; gap: 1em; align-items: baseline; padding: .6em 1em; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
  header h1 { font-size: 1.1em; margin: 0; }
  .dim { color: var(--dim); }
  #status.live { color: var(--ok); } #status.down { color: var(--bad); }
  main { display: flex; gap: 1em; padding: 1em; flex-wrap: wrap; align-items: flex-start; }
  #streams { display: flex; gap: 1em; flex-wrap: wrap; flex: 1 1 420px; }
  figure.stream { margin: 0; background: var(--panel); padding: .5em; border-radius: 6px; flex: 1 1 300px; max-width: 100%; }
  figure.stream img { display: block; width: 100%; max-height: 80vh; object-fit: contain; background: #000; }
  figcaption { margin-top: .3em; color: var(--dim); font-size: .9em; }
  aside { flex: 1 1 520px; display: flex; flex-direction: column; gap: 1em; min-width: 0; }
  section { background: var(--panel); padding: .5em; border-radius: 6px; overflow-x: auto; }
  h2 { font-size: 1em; margin: 0 0 .4em; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; font-size: .9em; }
  th, td { padding: .2em .5em; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
  th:first-child, td:first-child, th:nth-child(2), td:nth-child(2) { text-align: left; }
  td.warn { color: var(--bad); }
  #graph img { max-width: 100%; background: #fff; border-radius: 4px; }
</style>
</head>
<body>
<header>
  <h1>PoseGraph live: <span id="graph-name">@TITLE@</span></h1>
  <span class="dim">@GRAPHFILE@</span>
  <span id="status" class="live">live</span>
  <span>frames: <span id="frames">0</span></span>
  <span class="dim">view: at most @MAXFPS@ fps per stream</span>
</header>
<main>
  <div id="streams">
@IMGS@
  </div>
  <aside>
    <section>
      <h2>Nodes <span id="metrics-note" class="dim"></span></h2>
      <table id="metrics">
        <thead><tr><th>node</th><th>kind</th><th>fps</th><th>fps now</th><th>in</th><th>out</th>
          <th>proc p50 ms</th><th>proc p95 ms</th><th>latency p50 ms</th><th>latency p95 ms</th>
          <th>drops</th><th>restarts</th><th>rss MB</th></tr></thead>
        <tbody><tr><td colspan="13" class="dim">waiting for the first metrics (once a second)</td></tr></tbody>
      </table>
    </section>
    <section id="graph">
      <h2>Graph</h2>
      <img src="/graph.png" alt="the graph, drawn">
    </section>
  </aside>
</main>
<script>
"use strict";
const known = new Set(@NAMES@);
const streams = document.getElementById("streams");
function addStream(name) {
  known.add(name);
  const fig = document.createElement("figure");
  fig.className = "stream"; fig.dataset.stream = name;
  const img = document.createElement("img");
  img.dataset.stream = name; img.alt = "stream " + name;
  img.src = "/stream/" + encodeURIComponent(name) + ".mjpg";
  const cap = document.createElement("figcaption");
  const count = document.createElement("span");
  count.className = "count"; count.dataset.stream = name;
  cap.append(name + " ", count);
  fig.append(img, cap);
  streams.append(fig);
  watch(img);
}
function watch(img) {  // reconnect a stream that broke (the server restarted, the network blinked)
  img.addEventListener("error", () => setTimeout(() => {
    img.src = "/stream/" + encodeURIComponent(img.dataset.stream) + ".mjpg?t=" + Date.now();
  }, 1000));
}
document.querySelectorAll("#streams img").forEach(watch);
function cell(text, cls) { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; return td; }
function num(v, digits) { return (typeof v === "number" && isFinite(v)) ? v.toFixed(digits) : (v == null ? "" : String(v)); }
function setStatus(ok, text) { const s = document.getElementById("status"); s.className = ok ? "live" : "down"; s.textContent = text; }
async function getJSON(url) { const r = await fetch(url, {cache: "no-store"}); if (!r.ok) throw new Error(url + ": " + r.status); return r.json(); }
async function pollFrames() {
  try {
    const frames = await getJSON("/frames.json");
    let total = 0; const parts = [];
    for (const [name, v] of Object.entries(frames)) {
      if (!known.has(name)) addStream(name);
      total += v.frames;
      parts.push(name + " " + v.frames);
      document.querySelectorAll("span.count").forEach(el => {
        if (el.dataset.stream === name) el.textContent = v.frames + " frames, seq " + v.seq + (v.width ? ", " + v.width + "x" + v.height : "");
      });
    }
    const el = document.getElementById("frames");
    el.textContent = String(total) + (parts.length > 1 ? " (" + parts.join(", ") + ")" : "");
    el.dataset.total = total;
    setStatus(true, "live");
  } catch (e) { setStatus(false, "graph stopped (no answer)"); }
}
async function pollMetrics() {
  try {
    const m = await getJSON("/metrics.json");
    const nodes = m.nodes || {}, kinds = m.kinds || {};
    if (!Object.keys(nodes).length) return;
    const body = document.createElement("tbody");
    for (const [id, n] of Object.entries(nodes)) {
      const tr = document.createElement("tr"); tr.dataset.node = id;
      tr.append(cell(id), cell(kinds[id] || ""), cell(num(n.fps, 1)), cell(num(n.fps_now, 1)),
        cell(num(n.frames_in, 0)), cell(num(n.frames_out, 0)), cell(num(n.proc_ms_p50, 1)), cell(num(n.proc_ms_p95, 1)),
        cell(num(n.latency_ms_p50, 1)), cell(num(n.latency_ms_p95, 1)),
        cell(num(n.drops, 0), n.drops ? "warn" : ""), cell(num(n.restarts, 0), n.restarts ? "warn" : ""), cell(num(n.rss_mb, 0)));
      body.append(tr);
    }
    document.querySelector("#metrics tbody").replaceWith(body);
    document.getElementById("metrics-note").textContent = (m.machine ? "on " + m.machine + ", " : "") + "updated " + new Date().toLocaleTimeString();
  } catch (e) { /* pollFrames shows the status */ }
}
pollFrames(); pollMetrics();
setInterval(pollFrames, 1000); setInterval(pollMetrics, 1000);
</script>
</body>
</html>
"""
