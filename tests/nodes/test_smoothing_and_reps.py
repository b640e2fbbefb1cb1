"""EMA smoothing of votes, the repetition counter's hysteresis, the One Euro landmark
filter, and embed -> knn -> smooth -> reps as a real graph of processes. The node kinds run
in posegraph.testing.NodeHarness (the engine's Context and keyed state)."""
import numpy as np
import pytest

from conftest import ROOT
from posegraph.pose.features import mlkit_embeddings
from posegraph.pose.knn import KnnClassifier, load_samples
from posegraph.nodes.reps import Reps
from posegraph.pose.reps import RepetitionCounter
from posegraph.pose.smoothing import EmaDictSmoothing, OneEuroFilter, object_scale
from posegraph.nodes.smooth import OneEuro, Smooth
from posegraph.testing import NodeHarness
from pose_chain_nodes import squat_packets

SAMPLES = ROOT / "data" / "mlkit" / "fitness_pose_samples.csv"


# ----- EMA ----------------------------------------------------------------------------------
def test_ema_matches_a_hand_computed_sequence():
    ema = EmaDictSmoothing(window=3, alpha=0.5)  # weights newest first: 1, 0.5, 0.25
    assert ema({"a": 10}) == {"a": 10.0}
    out = ema({"a": 4, "b": 6})                  # a = (4 + 5) / 1.5, b = (6 + 0) / 1.5
    assert out == pytest.approx({"a": 6.0, "b": 4.0})
    out = ema({})                                # a = (0 + 2 + 2.5) / 1.75, b = (0 + 3 + 0) / 1.75
    assert out == pytest.approx({"a": 18 / 7, "b": 12 / 7})
    out = ema({"b": 10})                         # {a: 10} left the window: a = 0.25 * 4 / 1.75
    assert out == pytest.approx({"a": 4 / 7, "b": 46 / 7})


def test_ema_with_the_write_ups_defaults_keeps_a_steady_vote_and_decays_a_change():
    ema = EmaDictSmoothing()  # window 10, alpha 0.2
    for _ in range(12):
        assert ema({"up": 10}) == pytest.approx({"up": 10.0})
    out = ema({"down": 10})
    weights = 0.8 ** np.arange(10)
    assert out["down"] == pytest.approx(10 / weights.sum())
    assert out["up"] == pytest.approx(10 * weights[1:].sum() / weights.sum())


def test_smooth_node_outputs_nothing_without_a_person_but_still_ages_the_window():
    with NodeHarness(Smooth, {"window": 3, "alpha": 0.5}) as node:
        assert node.process({"votes": {"votes": {"a": 10}}})["scores"]["scores"] == {"a": 10.0}
        assert node.process({"votes": None}) == {}
        scores = node.process({"votes": {"votes": {"b": 10}}})["scores"]["scores"]
    assert scores == pytest.approx({"a": 2.5 / 1.75, "b": 10 / 1.75})  # {} counted as a frame of zeros


# ----- repetitions ----------------------------------------------------------------------------
def test_rep_counter_counts_enter_then_exit_once_despite_wobbling():
    counter = RepetitionCounter("squats_down", enter_threshold=6, exit_threshold=4)
    down = [0, 3, 5.9, 6.1, 5.9, 6.2, 7, 5, 4.1, 5.5, 4.0, 4.2]  # enters at 6.1; wobbles above 4
    counts = [counter({"squats_down": s}) for s in down]
    assert counts == [0] * len(down) and counter.entered
    assert counter({"squats_down": 3.9}) == 1 and not counter.entered  # below exit: one repetition
    for s in (4.5, 3.0, 5.9, 4.1, 6.0):  # never above 6 again: no new repetition
        assert counter({"squats_down": s}) == 1
    assert counter({"squats_down": 8}) == 1 and counter.entered
    assert counter({"other": 10}) == 2  # a missing class counts as 0 confidence


def test_reps_node_never_emits_empty_and_keeps_the_count_without_a_person():
    seen = []
    with NodeHarness(Reps, {"class_name": "squats_down", "enter_threshold": 6.0, "exit_threshold": 4.0}) as node:
        for scores in ({"squats_down": 9}, None, None, {"squats_down": 1}, None, {"squats_up": 10}):
            out = node.process({"scores": None if scores is None else {"scores": scores}})
            assert set(out) == {"count"}
            seen.append((out["count"]["reps"], out["count"]["entered"]))
    assert seen == [({"squats_down": 0}, True), ({"squats_down": 0}, True), ({"squats_down": 0}, True),
                    ({"squats_down": 1}, False), ({"squats_down": 1}, False), ({"squats_down": 1}, False)]
    assert out["count"]["class"] == "squats_down"


# ----- One Euro -------------------------------------------------------------------------------
def _noisy_pose_run(filter_, frames=150, step_at=90, step=100.0, sigma=3.0, seed=0):
    base = load_samples(SAMPLES).landmarks[300]
    rng = np.random.default_rng(seed)
    errors, raw_errors = [], []
    for i in range(frames):
        target = base + (step if i >= step_at else 0.0) * np.array([1.0, 0.0, 0.0])
        raw = target + rng.normal(0.0, sigma, base.shape)
        errors.append(filter_(raw, 1 / 30, object_scale(raw)) - target)
        raw_errors.append(raw - target)
    return np.array(errors), np.array(raw_errors)


def test_one_euro_reduces_jitter_on_a_still_pose_and_follows_a_step():
    errors, raw = _noisy_pose_run(OneEuroFilter(min_cutoff=0.05, beta=80.0, d_cutoff=1.0))  # the node's defaults
    still = slice(30, 90)
    assert errors[still].std() < 0.7 * raw[still].std()
    # after a 100 px jump it is within 5 px (mean |x error|) of the new place 3 frames later
    assert np.abs(errors[93:, :, 0]).mean(axis=1).max() < 5.0
    # without speed adaptation (beta 0) the same low cutoff smooths more but lags behind
    errors0, _ = _noisy_pose_run(OneEuroFilter(min_cutoff=1.0, beta=0.0, d_cutoff=1.0))
    assert errors0[still].std() < 0.5 * raw[still].std()
    assert np.abs(errors0[93, :, 0]).mean() > 30.0


def test_one_euro_node_filters_px_keeps_norm_consistent_and_resets_after_no_person():
    packets = [p for p in squat_packets() if p is not None]
    times = iter(range(10**9, 10**11, 200_000_000))  # capture times at 5 frames/s
    with NodeHarness(OneEuro, {"min_cutoff": 1.0, "beta": 0.0, "d_cutoff": 1.0, "fps": 0.0}) as node:
        def filtered(packet):
            return node.process({"landmarks": packet}, capture_ns=next(times))

        outs = [filtered(packet)["landmarks"] for packet in packets[:3]]
        assert np.array_equal(outs[0]["px"], packets[0]["px"])  # the first frame passes through
        a = 1 / (1 + 1 / (2 * np.pi * 1.0 * 0.2))               # alpha at 1 Hz, dt 0.2 s
        expected = outs[0]["px"][:, :3] + a * (packets[1]["px"][:, :3] - outs[0]["px"][:, :3])
        assert np.allclose(outs[1]["px"][:, :3], expected, atol=1e-3)
        assert np.allclose(outs[2]["norm"][:, :3], outs[2]["px"][:, :3] / [720, 1280, 720], atol=1e-6)
        assert outs[2]["width"] == 720 and outs[2]["layout"] == "blazepose33"
        assert node.process({"landmarks": None}) == {}
        again = filtered(packets[40])["landmarks"]
        assert np.array_equal(again["px"], packets[40]["px"])  # fresh start, not dragged from frame 2
        # world landmarks the model could not give (NaN) pass through without poisoning the state
        nan_world = dict(packets[41], world=np.full((33, 4), np.nan, np.float32))
        out = filtered(nan_world)["landmarks"]
        assert np.isnan(out["world"]).all() and np.isfinite(out["px"]).all()
        out = filtered(packets[42])["landmarks"]
        assert np.array_equal(out["world"], packets[42]["world"])


# ----- the chain as a real graph -----------------------------------------------------------------
GRAPH = """
name: pose_chain
nodes:
  - id: source
    uses: TESTS/pose_chain_nodes.py:SquatLandmarks
    params: {gaps: [20, 21, 22]}
  - {id: embed, uses: embed, inputs: {landmarks: source/landmarks}, replicas: 2}
  - {id: knn, uses: knn, inputs: {features: embed/features}}
  - {id: smooth, uses: smooth, inputs: {votes: knn/votes}}
  - {id: reps, uses: reps, params: {class_name: squats_down}, inputs: {scores: smooth/scores}}
  - id: sink
    uses: TESTS/pose_chain_nodes.py:Record
    params: {path: TMP/chain.jsonl}
    inputs: {votes: knn/votes, scores: smooth/scores, reps: reps/count}
"""


def test_embed_knn_smooth_reps_graph_counts_the_clips_squats(graph_run):
    """The graph's records equal the same chain run in this process, and the clip's two
    finished squats are counted (it ends in the third one's bottom)."""
    run = graph_run(GRAPH)
    assert run.wait() == 0, run.stderr
    records = run.records("chain.jsonl")
    assert [r["seq"] for r in records] == list(range(65))

    clf, ema, counter = KnnClassifier(SAMPLES), EmaDictSmoothing(), RepetitionCounter("squats_down")
    for record, packet in zip(records, squat_packets({20, 21, 22})):
        if packet is None:
            ema({})
            assert record["votes"] is None and record["scores"] is None
        else:
            e, m = mlkit_embeddings(packet["px"])
            votes = clf.classify_embedding(e.astype(np.float32), m.astype(np.float32))
            scores = ema(votes)
            counter(scores)
            assert record["votes"] == {"votes": votes}
            assert record["scores"]["scores"] == pytest.approx(scores, abs=1e-12)
        assert record["reps"] == {"reps": {"squats_down": counter.count}, "class": "squats_down", "entered": counter.entered}
    assert records[-1]["reps"]["reps"] == {"squats_down": 2} and records[-1]["reps"]["entered"] is True
    assert [r["reps"]["reps"]["squats_down"] for r in records[19:24]] == [1] * 5  # kept through the gap


# ----- several streams through one node -----------------------------------------------------------
def _clip_votes():
    """KNN votes of every frame of the squats clip (Google's reference landmarks, ML Kit's samples)."""
    clf = KnnClassifier(SAMPLES)
    votes = []
    for packet in squat_packets():
        e, m = mlkit_embeddings(packet["px"])
        votes.append(clf.classify_embedding(e.astype(np.float32), m.astype(np.float32)))
    return votes


def _interleave(node, streams, make_inputs, capture_ns=None):
    """Feed `streams` ({stream id: [item, ...]}) to one node (a NodeHarness), one item of each
    stream in turn (streams of unequal length: the longer one goes on alone); outputs per stream."""
    outs = {stream: [] for stream in streams}
    for i in range(max(len(items) for items in streams.values())):
        for stream, items in streams.items():
            if i < len(items):
                t = capture_ns[stream](i) if capture_ns else 0
                outs[stream].append(node.process(make_inputs(items[i]), stream=stream, seq=i, capture_ns=t))
    return outs


def _alone(make_node, items, make_inputs, stream, capture_ns=None):
    """The same items through a fresh node that sees only that one stream."""
    with make_node() as node:
        return _interleave(node, {stream: items}, make_inputs, capture_ns and {stream: capture_ns[stream]})[stream]


def test_ema_smoothing_keeps_streams_apart():
    """Two cameras into one `smooth`: each stream's scores are those of a node that saw only
    that stream (a shared window would average one person's votes into the other's)."""
    votes = _clip_votes()
    streams = {0: [{"votes": v} for v in votes], 3: [None if i % 7 == 0 else {"votes": v} for i, v in enumerate(votes[::-1][:40])]}
    inputs = lambda packet: {"votes": packet}
    make = lambda: NodeHarness(Smooth, {"window": 10, "alpha": 0.2})
    with make() as node:
        outs = _interleave(node, streams, inputs)
    for stream, items in streams.items():
        assert outs[stream] == _alone(make, items, inputs, stream), f"stream {stream}"
    # not trivially equal: the clip read forwards and backwards disagree most of the time
    assert sum(a != b for a, b in zip(outs[0], outs[3])) > 30


def test_reps_counts_each_stream_separately():
    """Stream 0 is the whole clip (2 squats, in the third at the end), stream 1 the clip from
    frame 16 with gaps: each count is its own, as if the node saw that stream alone."""
    ema = EmaDictSmoothing()
    scores = [{"scores": ema(v)} for v in _clip_votes()]
    streams = {0: scores, 1: [None if 20 <= i < 24 else s for i, s in enumerate(scores[16:])]}
    inputs = lambda packet: {"scores": packet}
    make = lambda: NodeHarness(Reps, {"class_name": "squats_down", "enter_threshold": 6.0, "exit_threshold": 4.0})
    with make() as node:
        outs = _interleave(node, streams, inputs)
    for stream, items in streams.items():
        assert outs[stream] == _alone(make, items, inputs, stream), f"stream {stream}"
    assert outs[0][-1]["count"] == {"reps": {"squats_down": 2}, "class": "squats_down", "entered": True}
    assert outs[1][-1]["count"]["reps"] == {"squats_down": 1}
    # one shared counter would have counted every stream's exits together
    shared = RepetitionCounter("squats_down")
    for a, b in zip(streams[0], streams[1]):
        shared(a["scores"]), shared(b["scores"] if b else {})
    assert shared.count > 3


def test_one_euro_keeps_streams_apart_with_their_own_clock():
    """Landmarks of the clip at 5 frames/s on stream 0 and the clip backwards at 30 frames/s
    on stream 2, interleaved: each stream is filtered as if alone, with dt from its own
    capture times (not the gap to the other stream's frame), and a gap resets only its stream."""
    packets = squat_packets({10})
    streams = {0: packets, 2: packets[::-1][:30]}
    clocks = {0: lambda i: 10**9 + i * 200_000_000, 2: lambda i: 5 * 10**9 + i * 33_333_333}
    inputs = lambda packet: {"landmarks": packet}
    make = lambda: NodeHarness(OneEuro, {"min_cutoff": 1.0, "beta": 0.0, "d_cutoff": 1.0, "fps": 0.0})
    with make() as node:
        outs = _interleave(node, streams, inputs, clocks)
    for stream, items in streams.items():
        alone = _alone(make, items, inputs, stream, clocks)
        assert len(alone) == len(outs[stream])
        for i, (got, want) in enumerate(zip(outs[stream], alone)):
            if want == {}:
                assert got == {}, (stream, i)
                continue
            for key in ("px", "norm", "world"):
                assert np.array_equal(got["landmarks"][key], want["landmarks"][key]), (stream, i, key)
    # the filter really works on both: output differs from input after the first frame
    assert not np.array_equal(outs[0][3]["landmarks"]["px"], packets[3]["px"])
    assert not np.array_equal(outs[2][3]["landmarks"]["px"], streams[2][3]["px"])


TWO_CAMERAS = """
name: two_cameras
nodes:
  - {id: cam1, uses: TESTS/pose_chain_nodes.py:SquatLandmarks, params: {gaps: [20, 21, 22]}}
  - {id: cam2, uses: TESTS/pose_chain_nodes.py:SquatLandmarks, params: {gaps: [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 40]}}
  - {id: embed, uses: embed, inputs: {landmarks: [cam1/landmarks, cam2/landmarks]}}
  - {id: knn, uses: knn, inputs: {features: embed/features}}
  - {id: smooth, uses: smooth, inputs: {votes: knn/votes}}
  - {id: reps, uses: reps, params: {class_name: squats_down}, inputs: {scores: smooth/scores}}
  - id: records
    uses: jsonl
    params: {path: TMP/out/chain.jsonl}
    inputs: {votes: knn/votes, scores: smooth/scores, reps: reps/count}
"""


def test_two_cameras_through_one_chain_are_smoothed_counted_and_written_apart(graph_run):
    """Two sources into one embed -> knn -> smooth -> reps -> jsonl graph: one file per
    camera, named after its source, each equal to the chain run on that camera alone."""
    run = graph_run(TWO_CAMERAS)
    assert run.wait(timeout=90) == 0, run.stderr
    assert sorted(p.name for p in (run.dir / "out").iterdir()) == ["chain.cam1.jsonl", "chain.cam2.jsonl"]
    clf = KnnClassifier(SAMPLES)
    cam2_gaps = {3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 40}  # nobody during the first squat's way down
    for name, gaps, reps in (("cam1", {20, 21, 22}, 2), ("cam2", cam2_gaps, 1)):
        records = run.records(f"out/chain.{name}.jsonl")
        assert [r["seq"] for r in records] == list(range(65)) and {r["source"] for r in records} == {name}
        ema, counter = EmaDictSmoothing(), RepetitionCounter("squats_down")
        for record, packet in zip(records, squat_packets(gaps)):
            if packet is None:
                ema({})
                assert record["votes"] is None and record["smoothed"] is None
            else:
                e, m = mlkit_embeddings(packet["px"])
                votes = clf.classify_embedding(e.astype(np.float32), m.astype(np.float32))
                assert record["votes"] == votes
                assert record["smoothed"] == pytest.approx(ema(votes), abs=1e-4)
                counter(record["smoothed"])
            assert record["reps"] == {"squats_down": counter.count}, (name, record["seq"])
        assert counter.count == reps  # cam2 missed the first squat; cam1's does not count for it
