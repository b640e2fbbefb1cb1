"""`embed`: landmarks -> pose features (posegraph.pose.features), per person."""
from __future__ import annotations

import numpy as np
from posegraph.nodes.per_person import PersonNode, skip_person
from posegraph.pose import landmarks as lm
from posegraph.pose.features import (
    LayoutError,
    coco_as_blazepose,
    joint_angles,
    landmarks_of,
    mlkit_embeddings,
    normalized_keypoints,
)

from posegraph import Node, Param


class Embed(PersonNode, Node):
    """Landmarks -> features (see the module doc); stateless, so it can be replicated.

    Per person (nodes/people.py): a multi-person landmarks packet gives a multi-person
    features packet with the same ids; one person (no "ids") works exactly as before.

    Layouts: `angles` and `keypoints` work on every layout (BlazePose-33, COCO-17,
    OpenPose-18: they use the COCO-17 points all of them have; a custom layout gets the
    angles / keypoints its points allow, a shorter vector). `mlkit` works on
    BlazePose-33 and on COCO-17 (its distances use only joints COCO-17 has; depth is 0 and
    the features say `depth: False`, so the KNN ignores z for that person). Another layout
    is skipped on that frame (no features), counted as `wrong_layout` and reported once in
    the log; the upstream layout is not known at open, so this is checked per frame. So is
    a custom layout with no angle (`angles`) or no COCO-17 point (`keypoints`).
    """

    INPUTS = {"landmarks": "landmarks packet (nodes/packets.py), one or several people; None when no person"}
    OUTPUTS = {"features": "{'vector': float32, 'kind': str, mlkit: 'embedding' and 'mirrored' float32 23 x 3}, per person"}
    PARAMS = {"kind": Param("mlkit", choices=("mlkit", "angles", "keypoints"),
                            help="mlkit: ML Kit embedding (for knn, blazepose33 only); angles: joint angles in radians; "
                                 "keypoints: body-normalised COCO x,y (angles and keypoints: any layout)")}
    STATEFUL = False

    def open(self, ctx):
        self.kind = self.params["kind"]

    def process_person(self, inputs, ctx, key):
        found = landmarks_of(inputs["landmarks"])
        if found is None:
            return {}
        px, layout = found
        if self.kind == "mlkit":
            depth = True
            if layout == lm.COCO17 and np.shape(px)[0] == 17:
                px, depth = coco_as_blazepose(px), False  # no depth: the KNN then weighs z 0
            elif layout != lm.BLAZEPOSE33 or np.shape(px)[0] != 33:
                skip_person(self, ctx, "wrong_layout", f"embed kind 'mlkit' needs blazepose33 or coco17 landmarks, got {layout!r}: "
                                                       "such people get no features (kinds angles and keypoints work on any layout, "
                                                       "custom ones included)")
                return {}
            embedding, mirrored = mlkit_embeddings(px)
            embedding = embedding.astype(np.float32)
            return {"features": {"vector": embedding.reshape(-1), "kind": "mlkit", "depth": depth,
                                 "embedding": embedding, "mirrored": mirrored.astype(np.float32)}}
        try:
            vector = joint_angles(px, layout) if self.kind == "angles" else normalized_keypoints(px, layout)
        except LayoutError as exc:
            skip_person(self, ctx, "wrong_layout", f"embed kind {self.kind!r}: {exc}: such people get no features")
            return {}
        return {"features": {"vector": vector.astype(np.float32), "kind": self.kind}}
