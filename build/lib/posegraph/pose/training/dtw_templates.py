"""DTW templates (posegraph.pose.dtw.Templates) from labelled clips or a sequence data set.

`posegraph dtw-templates` is the command around it; recording from a webcam stays in the
command (it is a countdown on the screen, then `Sequence` rows from BlazePose).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from posegraph.pose.dtw import KEEP, MARGIN, UNKNOWN, Calibration, Templates, TemplatesError, calibrate_templates, record_templates_from_sequences
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


def build_templates(sequences: list[Sequence], kind: str = "body", segment: int = 45, hop: int = 15,
                    existing: Templates | None = None, classes=None, unknown_templates: bool = False,
                    keep: float = KEEP, standardize: bool = True, margin: float = MARGIN) -> tuple[Templates, int, Calibration | None]:
    """What `posegraph dtw-templates` makes: templates of `sequences` (`add_templates`),
    standardized when new (`Templates.standardize`) and calibrated (`calibrate`):
    (templates, how many were added, the calibration or None)."""
    templates, added = add_templates(sequences, kind, segment, hop, existing, classes, unknown_templates)
    if standardize and existing is None and added:
        templates.standardize()
    return templates, added, calibrate(templates, sequences, classes, keep, margin=margin)


def add_templates(sequences: list[Sequence], kind: str, segment: int, hop: int, existing: Templates | None = None,
                  classes=None, unknown_templates: bool = False) -> tuple[Templates, int]:
    """Templates of `sequences` (cut into `segment`-frame pieces every `hop` frames; 0: whole
    clips) added to `existing` or to new ones; (the templates, how many were added).

    With `classes`, clips of other labels are negatives: left out, or with
    `unknown_templates` added as templates of class "unknown"."""
    before = len(existing) if existing else 0
    known, negatives = split_negatives(sequences, classes)
    templates = record_templates_from_sequences(known, kind, segment=segment, hop=hop, templates=existing)
    if unknown_templates and negatives:
        record_templates_from_sequences([_as_unknown(s) for s in negatives], kind, segment=segment, hop=hop,
                                        templates=templates)
    templates.params["unknown_templates"] = bool(unknown_templates and negatives) or templates.params.get("unknown_templates", False)
    return templates, len(templates) - before


def split_negatives(sequences: list[Sequence], classes=None) -> tuple[list[Sequence], list[Sequence]]:
    """(clips of `classes`, clips of other labels); no classes: every clip is known."""
    if not classes:
        return list(sequences), []
    chosen = set(classes)
    return [s for s in sequences if s.label in chosen], [s for s in sequences if s.label not in chosen]


def _as_unknown(seq: Sequence) -> Sequence:
    return Sequence(clip_id=seq.clip_id, label=UNKNOWN, layout=seq.layout, points=seq.points, width=seq.width,
                    height=seq.height, fps=seq.fps, world=seq.world, group=seq.group)


def calibrate(templates: Templates, sequences: list[Sequence], classes=None, keep: float = KEEP,
              band: int = 10, margin: float = MARGIN) -> Calibration | None:
    """Measure and store the templates' "unknown" thresholds (posegraph.pose.dtw.calibrate_templates),
    checked on the negatives among `sequences` (clips whose label is not in `classes`; taken
    from `templates` when they hold them as class "unknown"). None, and no threshold in the
    file, when no class has templates of two groups."""
    _, negatives = split_negatives(sequences, classes)
    pool = templates
    if negatives and UNKNOWN not in templates.labels:
        pool = templates.subset(list(range(len(templates))))
        record_templates_from_sequences([_as_unknown(s) for s in negatives], templates.kind,
                                        segment=int(templates.params.get("segment") or 0),
                                        hop=int(templates.params.get("hop") or 0), templates=pool)
    try:
        calibration = calibrate_templates(pool, classes or templates.classes, band, keep, margin)
    except ValueError:  # no held-out distance at all
        for key in ("threshold", "class_thresholds", "calibration"):
            templates.params.pop(key, None)
        return None
    if pool is not templates:
        calibration.store(templates.params, pool.params.get("calibration"))
    return calibration
