"""`knn`: ML Kit's two-stage KNN over a samples CSV (posegraph.pose.knn), per person."""
from __future__ import annotations

from posegraph.nodes.per_person import PersonNode
from posegraph.pose.knn import BUNDLED_SAMPLES, KnnClassifier, SamplesError
from posegraph.pose.paths import resolve_path

from posegraph import Node, NodeOpenError, Param


class Knn(PersonNode, Node):
    """Features (kind mlkit) -> votes of ML Kit's KNN over a samples CSV. Stateless.

    Per person (nodes/people.py): every person of a multi-person features packet is
    classified on their own and the votes packet carries the same ids. People of a COCO-17
    pose model (features with `depth: False`) are compared in x and y only: the samples'
    z is weighed 0 for them.
    """

    INPUTS = {"features": "features packet of embed with kind mlkit, one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: count among the top_n_by_mean}}, per person; None when no person"}
    PARAMS = {
        "samples": Param(BUNDLED_SAMPLES, help="ML Kit samples CSV; relative paths: from the current directory, else the project root"),
        "top_n_by_max": Param(30, min=1, help="samples kept by the max-distance stage"),
        "top_n_by_mean": Param(10, min=1, help="samples kept by the mean-distance stage (the votes)"),
    }
    STATEFUL = False

    def open(self, ctx):
        path = resolve_path(self.params["samples"])
        try:
            self.classifier = KnnClassifier(path, self.params["top_n_by_max"], self.params["top_n_by_mean"])
            self.flat = None  # the same samples with z weighted 0, made for the first COCO-17 person
        except SamplesError as exc:
            raise NodeOpenError(str(exc), field="params.samples") from None

    def process_person(self, inputs, ctx, key):
        features = inputs["features"]
        if features is None:
            return {}
        if features.get("kind", "mlkit") != "mlkit" or "embedding" not in features:
            raise ValueError(f"knn needs embed's mlkit features, got kind {features.get('kind')!r}")
        classifier = self.classifier
        if not features.get("depth", True):  # a COCO-17 person: no z to compare, so z weighs 0
            if self.flat is None:
                self.flat = KnnClassifier(self.classifier.samples, self.params["top_n_by_max"], self.params["top_n_by_mean"],
                                          axes_weights=(1.0, 1.0, 0.0))
            classifier = self.flat
        votes = classifier.classify_embedding(features["embedding"], features.get("mirrored"))
        return {"votes": {"votes": votes}}
