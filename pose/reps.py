"""`reps`: the write-up's repetition counter over smoothed class scores.

A repetition of, say, a squat is counted when the pose has been "entered" (the class's
smoothed votes rose above enter_threshold) and is then left (they fell below
exit_threshold). Two thresholds (hysteresis) keep a score wobbling around one value from
counting many times.
"""
from __future__ import annotations


class RepetitionCounter:
    """Counts enter -> exit transitions of one class's confidence (0..10 votes)."""

    def __init__(self, class_name: str, enter_threshold: float = 6.0, exit_threshold: float = 4.0):
        if exit_threshold > enter_threshold:
            raise ValueError("exit_threshold must not be above enter_threshold")
        self.class_name = class_name
        self.enter_threshold = float(enter_threshold)
        self.exit_threshold = float(exit_threshold)
        self.entered = False
        self.count = 0

    def __call__(self, scores: dict) -> int:
        confidence = float((scores or {}).get(self.class_name, 0.0))
        if not self.entered:
            self.entered = confidence > self.enter_threshold
        elif confidence < self.exit_threshold:
            self.count += 1
            self.entered = False
        return self.count

    def packet(self) -> dict:
        """The reps packet (posegraph/pose/packets.py): the count so far and whether the pose is entered."""
        return {"reps": {self.class_name: self.count}, "class": self.class_name, "entered": self.entered}
