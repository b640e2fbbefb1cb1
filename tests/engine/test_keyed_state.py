"""Keyed state is the engine's job: a user's node declares `KEYS` and `new_state` and gets a
state per (stream, key), calls for keys missing lately, retirement after KEY_TIMEOUT frames,
at the end of a stream and at close, in the test harness and in a real graph alike."""

import pytest

import keyed_test_nodes as user  # noqa: E402

from posegraph.testing import NodeHarness  # noqa: E402


def items(**values):
    return {"items": {"items": {k.strip("k"): v for k, v in values.items()}}}


@pytest.fixture
def node():
    user.CLOSED.clear()
    with NodeHarness(user.RunningTotal) as harness:
        yield harness


def test_each_key_keeps_its_own_state_and_outputs_are_merged(node):
    node.process(items(k1=5, k2=100))
    out = node.process(items(k1=1, k2=10))
    assert out == {"totals": {"items": {"1": [6, 2], "2": [110, 2]}}}


def test_a_key_missing_lately_is_called_with_none_and_retired_after_the_timeout(node):
    node.process(items(k1=5, k2=7))
    calls = [node.process(items(k1=1))["totals"]["items"] for _ in range(4)]
    # key 2 is called with None (its sum holds) for KEY_TIMEOUT = 3 frames, then retired
    assert [c.get("2") for c in calls] == [[7, 2], [7, 3], [7, 4], None]
    assert user.CLOSED == [(0, 2)]
    assert node.process(items(k2=1))["totals"]["items"]["2"] == [1, 1]  # back: a fresh state


def test_streams_do_not_share_state_and_an_ended_stream_retires_its_keys(node):
    node.process(items(k1=5), stream=0)
    assert node.process(items(k1=1), stream=1)["totals"]["items"]["1"] == [1, 1]
    node.end_stream(0)
    assert user.CLOSED == [(0, 1)]
    assert node.process(items(k1=2), stream=1)["totals"]["items"]["1"] == [3, 2]


def test_close_retires_every_state(node):
    node.process(items(k1=1, k2=2))
    node.close()
    assert sorted(user.CLOSED) == [(0, 1), (0, 2)]
    node.open()  # the fixture closes it again


def test_an_unsplit_packet_is_key_0_until_real_keys_appear(node):
    assert node.process({"items": None})["totals"]["items"] == {"0": [0, 1]}  # nobody yet: key 0, with None
    assert node.process(items(k0=4))["totals"]["items"] == {"0": [4, 2]}
    node.process(items(k3=1))
    assert (0, 0) in user.CLOSED  # real keys: key 0's state went


def test_a_users_keyed_node_keeps_state_per_stream_and_key_in_a_real_graph(graph_run):
    plan_a = [{1: 1, 2: 10}, {1: 1}, {1: 1, 2: 10}, {}, {2: 10}]
    plan_b = [{1: 100}, {1: 100}]
    run = graph_run(f"""
name: keyed
nodes:
  - {{id: cam_a, uses: TESTS/keyed_test_nodes.py:Items, params: {{plan: {plan_a}}}}}
  - {{id: cam_b, uses: TESTS/keyed_test_nodes.py:Items, params: {{plan: {plan_b}}}}}
  - {{id: total, uses: TESTS/keyed_test_nodes.py:RunningTotal, inputs: {{items: [cam_a/items, cam_b/items]}}}}
  - {{id: sink, uses: TESTS/keyed_test_nodes.py:Record, params: {{path: TMP/sink.jsonl}}, inputs: {{totals: total/totals}}}}
""")
    assert run.wait(timeout=60) == 0, run.stderr
    by_stream = {}
    for record in run.records():
        by_stream.setdefault(record["stream"], []).append((record["seq"], record["items"]))
    assert sorted(by_stream["cam_a"]) == [(0, {"1": [1, 1], "2": [10, 1]}), (1, {"1": [2, 2], "2": [10, 2]}),
                                          (2, {"1": [3, 3], "2": [20, 3]}), (3, {"1": [3, 4], "2": [20, 4]}),
                                          (4, {"1": [3, 5], "2": [30, 5]})]
    assert sorted(by_stream["cam_b"]) == [(0, {"1": [100, 1]}), (1, {"1": [200, 2]})]


def test_a_restarted_instance_resumes_with_the_keyed_state_kept_at_the_last_finished_seq(tmp_path):
    """posegraph.runtime.checkpoints: the state after the last seq below the mark is what a
    new instance gets back, per stream; what the node holds itself is referred to, not copied."""
    from posegraph.keyed import KeyedState
    from posegraph.runtime.checkpoints import Checkpoints

    first = user.RunningTotal({})
    first.lookup = {"big": list(range(100_000))}  # something the node holds, that states may refer to
    keyed = KeyedState(first)
    kept = Checkpoints(str(tmp_path / "node.0.state"), keyed)

    class Ctx:
        state = key = None
        stream = 0

    for seq, value in enumerate([5, 1, 10, 100]):
        Ctx.seq = seq
        keyed.call({"items": {"items": {"1": value}}}, Ctx)
        keyed.states[0, 1].lookup = first.lookup
        kept.take(0, seq)
    kept.commit(0, 3)  # seqs 0..2 finished downstream; seq 3 is still in flight
    assert len(kept.taken[0]) == 1 and (tmp_path / "node.0.state.0.ckpt").stat().st_size < 1000

    second = user.RunningTotal({})
    second.lookup = {"big": []}
    again = KeyedState(second)
    assert Checkpoints(str(tmp_path / "node.0.state"), again).restore(0) == 3
    state = again.states[0, 1]
    assert (state.sum, state.calls) == (16, 3) and state.lookup is second.lookup
    assert Checkpoints(str(tmp_path / "node.0.state"), again).restore(1) is None  # nothing kept for stream 1


def test_a_state_that_cannot_be_pickled_is_not_kept_and_nothing_fails(tmp_path):
    from posegraph.keyed import KeyedState
    from posegraph.runtime.checkpoints import Checkpoints

    node = user.RunningTotal({})
    keyed = KeyedState(node)
    keyed.states[0, 1] = open(tmp_path / "a file", "w")  # a state holding an open file
    said = []
    kept = Checkpoints(str(tmp_path / "node.0.state"), keyed, log=lambda message, level: said.append(message))
    kept.take(0, 0)
    kept.commit(0, 1)
    keyed.states[0, 1].close()
    assert not kept.enabled and said and "not kept across a restart" in said[0]
    assert not list(tmp_path.glob("*.ckpt")) and kept.restore(0) is None
