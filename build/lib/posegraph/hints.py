"""The "did you mean" of every error that names something unknown."""
from __future__ import annotations

import difflib


def did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
