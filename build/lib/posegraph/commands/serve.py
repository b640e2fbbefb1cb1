"""`posegraph serve`: the web app (posegraph.webapp): upload a video, run a pose graph on it, see the result."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from posegraph.webapp.jobs import JobQueue
from posegraph.webapp.server import Server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="posegraph serve", description="Web app: upload a video, run a pose graph on it, see the result.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0, metavar="MB", help="largest upload accepted (default 200)")
    parser.add_argument("--jobs-dir", default="out/web_jobs", metavar="DIR", help="one folder per job is made here (default out/web_jobs)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    if not args.max_upload_mb > 0:
        parser.error("--max-upload-mb must be more than 0")
    try:
        queue = JobQueue(Path(args.jobs_dir))
        server = Server((args.host, args.port), queue, int(args.max_upload_mb * 1e6))
    except OSError as exc:
        print(f"error: cannot serve on {args.host}:{args.port} (jobs in {args.jobs_dir}): {exc.strerror or exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else host
    queue.start()

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"PoseGraph web app: http://{shown}:{port}/  (jobs in {queue.dir}, uploads up to {args.max_upload_mb:g} MB; Ctrl-C stops)", flush=True)
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"warning: listening on {host}: anyone who can reach this address can upload and run jobs", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        print("stopping: finishing requests, stopping the running job", flush=True)
    finally:
        queue.stop()
        server.server_close()
    return 0
