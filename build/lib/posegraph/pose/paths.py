"""Where a path param points, the same rule for every kind that reads a bundled file.

PROJECT_ROOT is the folder that holds models/, data/ and graphs/: the repository in a
checkout, the installed `posegraph` package in a wheel (setup.cfg maps them there)."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _places(path: str, graph_file: str = "") -> list[Path]:
    """Where a relative path is looked for, in order: the current directory (where the
    runner was started: paths given on the command line), the graph file's folder, and the
    package (the bundled models/, data/ and graphs/, in a checkout or an installed wheel)."""
    candidate = Path(os.path.expanduser(path))
    if candidate.is_absolute():
        return [candidate]
    places = [Path.cwd() / candidate]
    if graph_file:
        places.append(Path(graph_file).resolve().parent / candidate)
    places.append(PROJECT_ROOT / candidate)
    return list(dict.fromkeys(places))


def resolve_path(path: str, graph_file: str = "") -> Path:
    """The first of `_places` that exists; none: the first (so an error names the path as given)."""
    places = _places(path, graph_file)
    return next((place for place in places if place.exists()), places[0])


def find_path(path: str, graph_file: str = "") -> Path:
    """`resolve_path`, or FileNotFoundError naming every place it looked."""
    places = _places(path, graph_file)
    for place in places:
        if place.exists():
            return place
    looked = ", ".join(str(place) for place in places)
    raise FileNotFoundError(f"no such file: {path!r} (looked in {looked})")
