"""The web side of PoseGraph (installed as `posegraph.webapp`).

`posegraph serve`, a local app around the pose graphs (upload a video, run a graph on it,
see the result): server.py (HTTP routes), jobs.py (the job queue: one worker thread, one
runner subprocess at a time), uploads.py (what an upload must be), timeline.py (the SVG
timeline of a result), pages.py (the HTML, with no external assets).

live.py: the live view of a running graph that the `web` node serves.
"""
