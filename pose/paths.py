"""Where a path param points, the same rule for every kind that reads a bundled file."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_path(path: str) -> Path:
    """Absolute as given; relative: from the current directory (where the runner was
    started) when it exists there, else from the project root, so the bundled defaults
    (models/..., data/...) work whatever the directory the graph is run from."""
    candidate = Path(os.path.expanduser(path))
    if candidate.is_absolute():
        return candidate
    here = Path.cwd() / candidate
    if here.exists():
        return here
    bundled = PROJECT_ROOT / candidate
    return bundled if bundled.exists() else here
