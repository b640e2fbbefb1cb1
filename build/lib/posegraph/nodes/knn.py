"""`knn`: ML Kit's two-stage KNN over a samples CSV (posegraph.pose.knn), per person."""
from __future__ import annotations

from posegraph.pose.knn import BUNDLED_SAMPLES, KnnClassifier, SamplesError
from posegraph.pose.paths import find_path
from posegraph.pose.people import BY_PERSON

from posegraph import Node, NodeOpenError, Param


class Knn(Node):
    """Features -> votes of ML Kit's KNN over a samples CSV, for each person. Stateless.

    The samples say which features they take: ML Kit's CSV (no sidecar) embed's `mlkit`;
    samples made by `knn-samples --data` embed's `body` (view-invariant, from world
    landmarks), and their sidecar holds calibrated "unknown" thresholds: above them the
    answer is "unknown" (votes {"unknown": top_n_by_mean}) and the packet also carries the
    answer ("label") and the neighbour distance ("distance"). ML Kit's samples give the
    votes packet exactly as before. A person whose features are of another kind is skipped,
    counted as `wrong_features` and reported once. People of a COCO-17 pose model
    (features with `depth: False`) are compared in x and y only
    (posegraph.pose.knn.KnnClassifier.classify_features).
    """

    INPUTS = {"features": "features packet of embed (the samples' kind), one or several people; None when no person"}
    OUTPUTS = {"votes": "{'votes': {class: count among the top_n_by_mean}} (samples with a sidecar also 'label': the "
                        "answer or 'unknown', 'distance': neighbour distance), per person; None when no person"}
    PORT_TYPES = {"in:features": "features", "out:votes": "votes"}
    PARAMS = {
        "samples": Param(BUNDLED_SAMPLES, help="samples CSV (ML Kit's, or from runner.py knn-samples, with its .json sidecar); "
                                               "relative paths: from the current directory, the graph file's folder, else the package"),
        "top_n_by_max": Param(30, min=1, help="samples kept by the max-distance stage"),
        "top_n_by_mean": Param(10, min=1, help="samples kept by the mean-distance stage (the votes)"),
        "threshold": Param(0.0, min=-1.0, help="neighbour distance above which the answer is 'unknown'; 0: the samples' "
                                               "calibrated thresholds (none for ML Kit's samples); -1: off"),
    }
    KEYS = BY_PERSON

    def open(self, ctx):
        p = self.params
        try:
            self.classifier = KnnClassifier(find_path(p["samples"], ctx.graph_file), p["top_n_by_max"], p["top_n_by_mean"],
                                            threshold=None if p["threshold"] == 0 else p["threshold"])
        except (SamplesError, FileNotFoundError) as exc:
            raise NodeOpenError(str(exc), field="params.samples") from None
        # only samples with a sidecar answer with a label: ML Kit's keep their packet as it was
        self.answers = bool(self.classifier.samples.meta)

    def process(self, inputs, ctx):
        features = inputs["features"]
        if features is None:
            return {}
        kind = features.get("kind", "mlkit")
        if kind != self.classifier.kind:
            ctx.warn_once("wrong_features", f"samples {self.params['samples']!r} take embed kind "
                                            f"{self.classifier.kind!r} features, got {kind!r}: such people get no votes "
                                            f"(set the embed node's kind: {self.classifier.kind})")
            return {}
        if not self.answers:
            return {"votes": {"votes": self.classifier.classify_features(features)}}
        return {"votes": self.classifier.answer(features)}
