"""`embed`: landmarks -> pose features (posegraph.pose.features), per person."""
from __future__ import annotations

from posegraph.pose.features import FEATURE_KINDS, LayoutError, features_packet
from posegraph.pose.people import BY_PERSON

from posegraph import Node, Param


class Embed(Node):
    """Landmarks -> features of each person; stateless, so it can be replicated.

    Layouts: `angles` and `keypoints` work on every layout, `mlkit` on BlazePose-33 and
    COCO-17, `body` (view-invariant, for KNN samples of kind body) on people with world
    landmarks, i.e. BlazePose (posegraph.pose.features.features_packet). The upstream layout is not known at
    open, so a person whose layout cannot give the features is skipped on that frame (no
    features), counted as `wrong_layout` and reported once in the log.
    """

    INPUTS = {"landmarks": "landmarks packet (posegraph/pose/packets.py), one or several people; None when no person"}
    OUTPUTS = {"features": "{'vector': float32, 'kind': str, mlkit and body: 'embedding' and 'mirrored' float32 23 x 3}, "
                           "per person"}
    PORT_TYPES = {"in:landmarks": "landmarks", "out:features": "features"}
    PARAMS = {"kind": Param("mlkit", choices=FEATURE_KINDS,
                            help="mlkit: ML Kit embedding (for knn; blazepose33 or coco17); body: the same pair vectors of the "
                                 "world landmarks in the body frame (for knn samples of kind body; BlazePose only); angles: "
                                 "joint angles in radians; keypoints: body-normalised COCO x,y (angles and keypoints: any layout)")}
    KEYS = BY_PERSON

    def process(self, inputs, ctx):
        kind = self.params["kind"]
        try:
            features = features_packet(inputs["landmarks"], kind)
        except LayoutError as exc:
            ctx.warn_once("wrong_layout", f"embed kind {kind!r}: {exc}: such people get no features")
            return {}
        return {} if features is None else {"features": features}
