"""DTW templates (posegraph.pose.dtw.Templates) from labelled clips or a sequence data set.

`posegraph dtw-templates` is the command around it; recording from a webcam stays in the
command (it is a countdown on the screen, then `Sequence` rows from BlazePose).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from posegraph.pose.dtw import Templates, TemplatesError, record_templates_from_sequences
from posegraph.pose.sequences import Sequence


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def clip_sequences(root, complexity: int = 1, log: Callable[[str], None] = _warn) -> list[Sequence]:
    """BlazePose landmarks of every clip of ROOT/<class>/<clip> (posegraph.pose.sequences),
    with a progress bar on stderr; a clip that cannot be read is skipped with a warning
    through `log`. SequenceError when ROOT holds no clips."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from posegraph.pose.sequences import SequenceError, extract_clip, list_clips

    clips = list_clips(root)
    sequences = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("clips", total=len(clips))
        for path, label in clips:
            clip_id = f"{label}/{path.name}"
            bar.update(task, description=clip_id[-40:])
            try:
                sequences.append(extract_clip(path, label, clip_id, complexity))
            except SequenceError as exc:
                log(f"warning: {clip_id}: skipped: {exc}")
            bar.advance(task)
    return sequences


def templates_to_extend(path, features: str | None) -> Templates | None:
    """The templates already in `path` (None when there is no such file), checked to hold
    `features` (None: any kind); TemplatesError saying why they cannot be added to."""
    path = Path(path)
    if not path.exists():
        return None
    existing = Templates.load(path)
    if features and features != existing.kind:
        raise TemplatesError(f"{path} holds {existing.kind!r} features, not {features!r}")
    return existing


def add_templates(sequences: list[Sequence], kind: str, segment: int, hop: int,
                  existing: Templates | None = None) -> tuple[Templates, int]:
    """Templates of `sequences` (cut into `segment`-frame pieces every `hop` frames; 0: whole
    clips) added to `existing` or to new ones; (the templates, how many were added)."""
    before = len(existing) if existing else 0
    templates = record_templates_from_sequences(sequences, kind, segment=segment, hop=hop, templates=existing)
    return templates, len(templates) - before
