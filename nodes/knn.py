"""`knn`: ML Kit's two-stage KNN over a samples CSV (posegraph.pose.knn), per person."""
from __future__ import annotations

from posegraph.pose.knn import BUNDLED_SAMPLES, KnnClassifier, SamplesError
from posegraph.pose.paths import resolve_path
from posegraph.pose.people import BY_PERSON

from posegraph import Node, NodeOpenError, Param


class Knn(Node):
    """Features (kind mlkit) -> votes of ML Kit's KNN over a samples CSV, for each person. Stateless.

    People of a COCO-17 pose model (features with `depth: False`) are compared in x and y
    only (posegraph.pose.knn.KnnClassifier.classify_features).
    """

    INPUTS = {"features": "features packet of embed with kind mlkit, one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: count among the top_n_by_mean}}, per person; None when no person"}
    PARAMS = {
        "samples": Param(BUNDLED_SAMPLES, help="ML Kit samples CSV; relative paths: from the current directory, else the project root"),
        "top_n_by_max": Param(30, min=1, help="samples kept by the max-distance stage"),
        "top_n_by_mean": Param(10, min=1, help="samples kept by the mean-distance stage (the votes)"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        try:
            self.classifier = KnnClassifier(resolve_path(self.params["samples"]), self.params["top_n_by_max"],
                                            self.params["top_n_by_mean"])
        except SamplesError as exc:
            raise NodeOpenError(str(exc), field="params.samples") from None

    def process(self, inputs, ctx):
        features = inputs["features"]
        if features is None:
            return {}
        return {"votes": {"votes": self.classifier.classify_features(features)}}
