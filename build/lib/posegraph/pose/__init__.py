"""The pose and action library (installed as `posegraph.pose`): everything PoseGraph knows
about people, with no engine in it, so a notebook can use it alone.

    landmarks, packets, people   keypoint layouts, the packets nodes exchange, several people in one
    backends/                    pose estimators: BlazePose (MediaPipe and LiteRT), PoseNet, MoveNet, custom
    tracking                     stable person ids across frames
    features                     ML Kit embedding, joint angles, body-normalised keypoints
    knn, dtw, lstm               the classifiers' models
    smoothing, reps              EMA and One Euro smoothing, the repetition counter
    drawing                      what render draws
    media, records               reading and writing video and images; the JSON record of a frame
    estimator                    a pose backend chosen and run from the pose kind's params
    sequences, sequence_import   landmark sequences of clips, and other tools' files
    training/                    training the LSTM and custom keypoint models, KNN samples, DTW templates
    paths                        where bundled models and data are
    recipes, summary             the graph `posegraph run SOURCE` builds, and the answer it prints

`estimate(image)` gives the landmarks of one image with no graph (posegraph.pose.estimator).
"""


def estimate(image, model: str = "blazepose", **options):
    """The landmarks packet of one image, or None (posegraph.pose.estimator.estimate)."""
    from posegraph.pose.estimator import estimate as _estimate

    return _estimate(image, model, **options)
