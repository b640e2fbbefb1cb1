"""The engine with real processes and real sockets: order, joins, end of stream, replicas,
queue policies, restarts, shutdown and garbage on the wire."""
import os
import random
import signal
import time

import msgpack
import zmq

from conftest import processes_with

CHAIN = """
name: chain
nodes:
  - id: source
    uses: synthetic
    params: {{width: {w}, height: {h}, count: {count}, fps: {fps}}}
  - id: hop1
    uses: passthrough
    inputs: {{frame: source/frame}}
  - id: hop2
    uses: passthrough
    inputs: {{frame: hop1/frame}}
  - id: sink
    uses: null
    params: {{record: TMP/sink.jsonl{sink_params}}}
    inputs: {{frame: hop2/frame}}
"""


def chain(count=200, fps=0, w=320, h=240, sink_params=""):
    return CHAIN.format(count=count, fps=fps, w=w, h=h, sink_params=sink_params)


def assert_complete_in_order(records, count):
    assert [r["seq"] for r in records] == list(range(count))
    assert all(r["stamp_ok"] for r in records), "a frame arrived with another frame's pixels"


def test_file_graph_ends_by_itself_with_every_frame_in_order(graph_run):
    run = graph_run(chain(count=300, w=1280, h=720))
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 300)
    nodes = run.metrics["nodes"]
    assert {n: nodes[n]["frames_out"] for n in ("source", "hop1", "hop2", "sink")} == dict.fromkeys(("source", "hop1", "hop2", "sink"), 300)
    assert nodes["sink"]["drops"] == 0 and nodes["sink"]["lost"] == 0
    for key in ("frames_in", "frames_out", "fps", "proc_ms_p50", "proc_ms_p95", "latency_ms_p50", "latency_ms_p95", "drops", "restarts", "rss_mb"):
        assert key in nodes["hop1"]
    assert nodes["hop1"]["rss_mb"] > 10


def test_the_metrics_file_is_rewritten_during_the_run_and_complete_at_the_end(graph_run):
    """--metrics is there before the run ends, counting what went through so far (a
    cluster driver, or any program, watches it), and holds the final counts at the end."""
    run = graph_run(chain(count=80, fps=20, w=64, h=48))  # 4 s
    during, deadline = 0, time.monotonic() + 20
    while time.monotonic() < deadline and not during and run.proc.poll() is None:
        time.sleep(0.1)
        if run.metrics_path.exists():
            during = run.metrics["nodes"]["sink"]["frames_out"]
    assert run.proc.poll() is None and 0 < during < 80, during  # seen while the run went on
    assert run.wait() == 0, run.stderr
    assert run.metrics["nodes"]["sink"]["frames_out"] == 80


def test_tcp_links_carry_frames_as_bytes_intact(graph_run):
    run = graph_run(chain(count=100, w=640, h=480).replace("name: chain", "name: chain\ntransport: tcp\nbase_port: 47310"))
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 100)


def test_join_pairs_inputs_by_sequence_number(graph_run):
    run = graph_run("""
name: join
nodes:
  - {id: source, uses: synthetic, params: {width: 640, height: 480, count: 150}}
  - {id: fast, uses: passthrough, inputs: {frame: source/frame}}
  - {id: slow, uses: TESTS/engine_test_nodes.py:Jitter, params: {max_ms: 3}, replicas: 2, inputs: {frame: source/frame}}
  - {id: pair, uses: TESTS/engine_test_nodes.py:Pair, params: {record: TMP/pair.jsonl}, inputs: {left: fast/frame, right: slow/frame}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl}, inputs: {frame: pair/frame}}
""")
    assert run.wait() == 0, run.stderr
    pairs = run.records("pair.jsonl")
    assert [p["seq"] for p in pairs] == list(range(150))
    assert all(p["left"] == p["right"] == p["seq"] for p in pairs)
    assert_complete_in_order(run.records(), 150)


def test_replicas_share_the_work_and_the_consumer_sees_sequence_order(graph_run):
    run = graph_run("""
name: replicas
nodes:
  - {id: source, uses: synthetic, params: {width: 320, height: 240, count: 240}}
  - {id: work, uses: TESTS/engine_test_nodes.py:Jitter, params: {max_ms: 4}, replicas: 3, inputs: {frame: source/frame}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl}, inputs: {frame: work/frame}}
""")
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 240)
    assert run.metrics["nodes"]["work"]["frames_out"] == 240


def test_latest_queue_drops_and_counts_while_block_loses_nothing(graph_run, tmp_path):
    latest = graph_run(chain(count=200, sink_params=", delay_ms: 4").replace(
        "inputs: {frame: hop2/frame}", "inputs: {frame: hop2/frame}\n    queue: {frame: {policy: latest, size: 1}}"))
    assert latest.wait() == 0, latest.stderr
    seqs = [r["seq"] for r in latest.records()]
    drops = latest.metrics["nodes"]["sink"]["drops"]
    assert drops > 0 and len(seqs) + drops == 200
    assert seqs == sorted(seqs) and seqs[-1] == 199 and all(r["stamp_ok"] for r in latest.records())
    assert f"note: node 'sink' dropped {drops} frame(s) of a live source" in latest.stderr

    (tmp_path / "sink.jsonl").unlink()
    block = graph_run(chain(count=200, sink_params=", delay_ms: 4"))
    assert block.wait() == 0, block.stderr
    assert_complete_in_order(block.records(), 200)
    assert block.metrics["nodes"]["sink"]["drops"] == 0


def test_a_latest_queue_keeps_every_frame_of_a_source_that_is_not_live(graph_run):
    run = graph_run(chain(count=200, sink_params=", delay_ms: 4").replace(
        "inputs: {frame: hop2/frame}", "inputs: {frame: hop2/frame}\n    queue: {frame: {policy: latest, size: 1}}")
        .replace("count: 200", "count: 200, live: false"))
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 200)
    assert run.metrics["nodes"]["sink"]["drops"] == 0
    assert "dropped" not in run.stderr


def test_sigkill_of_a_node_mid_stream_is_restarted_and_nothing_is_lost(graph_run):
    run = graph_run(chain(count=400, fps=150, w=640, h=480))
    run.wait_for_records(80)
    pid, _ = run.worker_pid("hop1.0")
    os.kill(pid, signal.SIGKILL)
    assert run.wait() == 0, run.stderr
    assert "node 'hop1' died (killed by SIGKILL); restarting (1/3)" in run.stderr
    assert_complete_in_order(run.records(), 400)
    assert run.metrics["nodes"]["hop1"]["restarts"] == 1


def wait_for_restart(run, instance: str, old_pid: int, settle: float) -> None:
    """Until a new process of `instance` runs, then `settle` seconds more."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(p != old_pid for p, c in run.workers().items() if c.name == f"{instance}.json"):
        time.sleep(0.05)
    time.sleep(settle)


def kill_hop1_while_stopped(run, stopped: str, pause: float, settle: float) -> None:
    """SIGSTOP `stopped` ("hop2.0", "sink.0"), wait `pause` s, SIGKILL hop1, wait for
    its new process and `settle` s more, then SIGCONT `stopped`."""
    held, _ = run.worker_pid(stopped)
    os.kill(held, signal.SIGSTOP)
    time.sleep(pause)
    hop1, _ = run.worker_pid("hop1.0")
    os.kill(hop1, signal.SIGKILL)
    wait_for_restart(run, "hop1.0", hop1, settle=settle)
    os.kill(held, signal.SIGCONT)


def test_what_a_killed_node_sent_last_but_never_delivered_is_made_again(graph_run):
    """Over tcp, four 6.2 MB frames do not fit the kernel's socket buffers: with hop2
    stopped, what hop1 sends last waits in hop1's own socket and dies with it. Those seqs
    are not done (their results were never released downstream), so the new hop1 makes
    them again."""
    run = graph_run(chain(count=90, fps=30, w=1920, h=1080).replace("name: chain", "name: chain\ntransport: tcp\nbase_port: 47330"))
    run.wait_for_records(20)
    # with hop2 stopped, hop1 sends what its credit allows; the last of it stays in its socket
    kill_hop1_while_stopped(run, "hop2.0", pause=0.3, settle=1.0)
    assert run.wait(timeout=60) == 0, run.stderr
    assert_complete_in_order(run.records(), 90)


def test_a_node_killed_while_its_consumer_holds_its_packets_is_restarted_and_nothing_hangs(graph_run):
    """hop2 holds packets of hop1 (its sink, stopped, gives it no credit) when hop1 dies.
    The new hop1 starts again at the first seq whose results were not released downstream
    and sends those seqs again; hop2 takes the ones it holds as the new incarnation's, so
    its acknowledgements reach it, or hop1's credit never comes back."""
    run = graph_run(chain(count=150, fps=0, w=320, h=240, sink_params=", delay_ms: 5"))
    run.wait_for_records(30)
    # hop2 fills up with packets it cannot send on; settled, the new hop1 has sent hop2 the seqs it holds
    kill_hop1_while_stopped(run, "sink.0", pause=0.3, settle=1.5)
    assert run.wait(timeout=60) == 0, run.stderr
    assert_complete_in_order(run.records(), 150)
    assert run.metrics["nodes"]["hop1"]["restarts"] == 1


def test_seqs_a_restarted_node_sends_again_do_not_free_slots_a_stopped_consumer_still_reads(graph_run):
    """The sink is stopped with hop2's results of a few seqs in its queue (slot references
    into the source's pool), and hop1 dies before hop2 fills up. The new hop1 sends those
    seqs again; hop2 must answer them only when the sink releases its copies. Released at
    once, they free the source's slots, the source (with credit again, the chain being
    nearly empty) writes new frames there, and the sink reads other frames' pixels or
    refuses stale references and waits forever."""
    run = graph_run(chain(count=200, fps=100, w=320, h=240, sink_params=", delay_ms: 2"))
    run.wait_for_records(30)
    # a few frames reach the sink's queue; hop2 holds one or two more
    kill_hop1_while_stopped(run, "sink.0", pause=0.06, settle=1.5)
    assert run.wait(timeout=60) == 0, run.stderr
    assert_complete_in_order(run.records(), 200)


def test_sigkill_of_the_source_resumes_where_it_stopped(graph_run):
    run = graph_run(chain(count=300, fps=150))
    run.wait_for_records(60)
    pid, _ = run.worker_pid("source.0")
    os.kill(pid, signal.SIGKILL)
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 300)


def test_a_node_that_keeps_failing_stops_the_graph_with_its_error(graph_run):
    run = graph_run("""
name: crash
nodes:
  - {id: source, uses: synthetic, params: {width: 64, height: 48, count: 100}}
  - {id: bad, uses: TESTS/engine_test_nodes.py:Crash, params: {at: 5}, max_restarts: 2, inputs: {frame: source/frame}}
  - {id: sink, uses: null, inputs: {frame: bad/frame}}
""")
    assert run.wait(timeout=30) == 1  # stops by itself: a timeout here would mean it hung
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: node 'bad' died (RuntimeError: cannot handle frame 5")
    assert "its 2 restarts are used up" in last
    assert run.workers() == {}


def test_a_node_that_cannot_open_stops_the_graph_with_one_line(graph_run):
    run = graph_run("""
name: nocam
nodes:
  - {id: camera, uses: TESTS/engine_test_nodes.py:NoCamera}
  - {id: sink, uses: null, inputs: {frame: camera/frame}}
""")
    assert run.wait(timeout=30) == 1
    errors = [l for l in run.stderr.splitlines() if l.startswith("error:")]
    assert errors == ["error: node 'camera' field 'params.source': cannot open camera 7"]


def _interrupt_and_check_drain(graph_run, sig):
    run = graph_run(chain(count=0, fps=60))
    run.wait_for_records(20)
    run_dir = str(next(iter(run.workers().values())).parent)
    start = time.monotonic()
    run.proc.send_signal(sig)
    code = run.wait(timeout=10)
    assert time.monotonic() - start < 5.0
    assert code == 0, run.stderr
    assert processes_with(run_dir) == []
    assert not os.path.exists(run_dir)
    seqs = [r["seq"] for r in run.records()]
    assert seqs == list(range(len(seqs)))  # drained: what was in flight arrived, in order
    return run


def test_ctrl_c_drains_within_5_s_and_leaves_no_process(graph_run):
    _interrupt_and_check_drain(graph_run, signal.SIGINT)


def test_sigterm_drains_within_5_s_and_leaves_no_process(graph_run):
    _interrupt_and_check_drain(graph_run, signal.SIGTERM)


def test_duration_and_max_frames_stop_an_endless_source(graph_run, tmp_path):
    run = graph_run(chain(count=0, fps=0), "--max-frames", "120")
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 120)
    (tmp_path / "sink.jsonl").unlink()
    timed = graph_run(chain(count=0, fps=50), "--duration", "1.5")
    assert timed.wait(timeout=20) == 0, timed.stderr
    assert 20 < len(timed.records()) < 200


def test_garbage_on_an_input_socket_is_counted_and_dropped(graph_run):
    run = graph_run(chain(count=250, fps=100, w=320, h=240))
    run.wait_for_records(10)
    _, config = run.worker_pid("sink.0")
    inbox = f"ipc://{config.parent}/sink.0.in"
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(inbox)
    rng = random.Random(7)
    good = {"k": "d", "e": 0, "f": 0, "i": 0, "s": 0, "q": 10_000, "t": 1, "x": 0, "b": True, "m": None,
            "a": [["", "|u1", [240, 320, 3], None]]}
    garbage = [
        [bytes(rng.getrandbits(8) for _ in range(64))],                      # random bytes
        [msgpack.packb(good)[:-7]],                                            # truncated header
        [msgpack.packb(good), b"\0" * 100],                                    # shape lies about the bytes
        [msgpack.packb(dict(good, e=999)), b"\0" * (240 * 320 * 3)],           # a link the sink does not have
        [msgpack.packb(dict(good, a=[["", "|u1", [240, 320, 3], ["pg-deadbeef00-x", 0, 1, 4096]]]))],  # foreign pool
        [msgpack.packb(dict(good, a=[["", "O", [1], None]])), b"x"],           # object dtype
        [msgpack.packb([1, 2, 3])],                                            # not a map
        [msgpack.packb(dict(good, k="zz"))],                                   # unknown kind
    ]
    for frames in garbage:
        push.send_multipart(frames)
    push.close()
    ctx.term()
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 250)
    assert run.metrics["nodes"]["sink"]["bad_messages"] >= len(garbage)


def test_a_forged_end_of_stream_or_sync_on_a_tcp_link_is_refused_and_the_run_completes(graph_run):
    """Anyone who can reach a plain tcp port can send a well-formed header: an end of
    stream or a SYNC not from the producer's live (random) incarnation is counted as bad
    and ignored, so the sink neither stops early nor skips seqs."""
    run = graph_run(chain(count=200, fps=100, w=160, h=120).replace("name: chain", "name: chain\ntransport: tcp\nbase_port: 47350"))
    run.wait_for_records(10)
    _, config = run.worker_pid("sink.0")
    import json
    settings = json.loads(config.read_text())
    link = settings["inputs"]["frame"][0]["link"]
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(settings["inbox"])
    forged = [{"k": "e", "e": link, "f": 0, "i": incarnation, "s": 0, "q": 20} for incarnation in (0, 1, 1024, 7 << 10)]
    forged += [{"k": "y", "e": link, "f": 0, "i": 1024, "s": 0, "q": 150}]
    for header in forged:
        push.send_multipart([msgpack.packb(header)])
    push.close()
    ctx.term()
    assert run.wait() == 0, run.stderr
    assert_complete_in_order(run.records(), 200)
    assert run.metrics["nodes"]["sink"]["bad_messages"] >= len(forged) - 1  # one may guess right: 1 in 2^19


def test_a_join_fed_by_a_latest_queue_fires_in_order_and_never_deadlocks(graph_run):
    # Drop markers from the `latest` branch reach the join before the frames of earlier
    # seqs complete; the join must still emit in seq order, or its consumer's small
    # `block` queue fills with packets it must hold back, and the graph stalls.
    run = graph_run("""
name: latest-join
nodes:
  - {id: source, uses: synthetic, params: {width: 320, height: 240, count: 200}}
  - {id: slow, uses: TESTS/engine_test_nodes.py:Jitter, params: {max_ms: 6}, inputs: {frame: source/frame},
     queue: {frame: {policy: latest, size: 1}}}
  - {id: pair, uses: TESTS/engine_test_nodes.py:Pair, params: {record: TMP/pair.jsonl}, inputs: {left: source/frame, right: slow/frame}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl, delay_ms: 1}, inputs: {frame: pair/frame}, queue: {frame: {size: 1}}}
""")
    assert run.wait(timeout=60) == 0, run.stderr
    seqs = [r["seq"] for r in run.records()]
    drops = run.metrics["nodes"]["slow"]["drops"]
    assert drops > 0 and len(seqs) + drops == 200
    assert seqs == sorted(seqs) and seqs[-1] == 199
    assert all(p["left"] == p["right"] == p["seq"] for p in run.records("pair.jsonl"))


def cpus_allowed(pid: int) -> set[int]:
    """The CPUs a process may run on, as Linux reports them."""
    text = [line for line in open(f"/proc/{pid}/status").read().splitlines() if line.startswith("Cpus_allowed_list")][0].split()[-1]
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def chain_with_hop1(node_lines: str) -> str:
    """An endless paced chain whose hop1 node carries `node_lines` (e.g. its cpus)."""
    return chain(count=0, fps=30).replace("  - id: hop1\n    uses: passthrough\n", "  - id: hop1\n    uses: passthrough\n" + node_lines)


def test_a_node_placed_on_a_cpu_gets_it_to_itself(graph_run):
    run = graph_run(chain_with_hop1("    cpus: [-1]\n"))
    run.wait_for_records(5)
    allowed = {name: cpus_allowed(run.worker_pid(f"{name}.0")[0]) for name in ("source", "hop1", "hop2", "sink")}
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 0
    last = os.cpu_count() - 1
    assert allowed["hop1"] == {last}
    if os.cpu_count() > 1:  # the others run on every CPU but that one
        assert all(allowed[n] == set(range(last)) for n in ("source", "hop2", "sink")), allowed


def test_cpus_shared_lets_the_other_nodes_use_that_cpu_too(graph_run):
    run = graph_run(chain_with_hop1("    cpus: [-1]\n    cpus_shared: true\n"))
    run.wait_for_records(5)
    allowed = {name: cpus_allowed(run.worker_pid(f"{name}.0")[0]) for name in ("hop1", "hop2")}
    run.proc.send_signal(signal.SIGINT)
    assert run.wait() == 0
    assert allowed["hop1"] == {os.cpu_count() - 1}
    assert allowed["hop2"] == cpus_allowed(os.getpid())  # left where the runner runs: every CPU it may use
