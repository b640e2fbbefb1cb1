"""One graph, nodes placed on machines by name, one runner per machine.

Here the three machines are three loopback addresses of this computer (127.0.0.1-3), so
every link between machines is a real tcp connection between separate runners; the
network-namespace tests (test_multi_host.py) do the same across real network stacks.
"""
import os
import subprocess
import sys
import time

import zmq

from conftest import ROOT
from machine_runs import MachineRun, read_records, wait_for_lines, write_hosts

GRAPH = """
name: spread
machines: [edge, gpu, sink]
base_port: {port}
nodes:
  - {{id: source, uses: synthetic, machine: edge, params: {{width: 320, height: 240, count: {count}, fps: {fps}}}}}
  - {{id: hop1, uses: passthrough, machine: gpu, inputs: {{frame: source/frame}}}}
  - {{id: hop2, uses: passthrough, machine: gpu, inputs: {{frame: hop1/frame}}}}
  - {{id: sink, uses: null, machine: sink, params: {{record: {out}}}, inputs: {{frame: hop2/frame}}}}
"""
LOOPBACK = {"edge": "127.0.0.1", "gpu": "127.0.0.2", "sink": "127.0.0.3"}


def spread_graph(tmp_path, port, count=300, fps=0, name="sink.jsonl", extra=""):
    graph = tmp_path / "spread.yaml"
    graph.write_text(GRAPH.format(port=port, count=count, fps=fps, out=tmp_path / name) + extra)
    return graph


def run_cli(*args, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "runner.py"), *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_three_machines_give_the_single_machine_output_frame_for_frame(tmp_path):
    graph = spread_graph(tmp_path, 47500, name="spread.jsonl")
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("sink", "edge", "gpu")]
    codes = [r.wait() for r in runs]
    assert codes == [0, 0, 0], "\n".join(r.output for r in runs)
    spread = read_records(tmp_path / "spread.jsonl")

    single_graph = spread_graph(tmp_path, 47500, name="single.jsonl")
    single = MachineRun(tmp_path, single_graph, None, None)
    assert single.wait() == 0, single.output
    assert spread == read_records(tmp_path / "single.jsonl")
    assert [r["seq"] for r in spread] == list(range(300)) and all(r["stamp_ok"] for r in spread)
    # each runner ran only its own nodes, and knew its peers (connected, or gone once done)
    assert set(runs[2].metrics["nodes"]) == {"hop1", "hop2"}
    assert runs[2].metrics["nodes"]["hop1"]["peers"]["edge: source.0"] in ("connected", "disconnected")
    assert runs[0].metrics["nodes"]["sink"]["peers"]["gpu: hop2.0"] in ("connected", "disconnected")


def test_start_order_does_not_matter_the_middle_machine_may_come_last(tmp_path):
    graph = spread_graph(tmp_path, 47520, count=100, fps=30)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("edge", "sink")]
    time.sleep(2.0)  # edge and sink wait for gpu
    assert not read_records(tmp_path / "sink.jsonl")
    runs.append(MachineRun(tmp_path, graph, "gpu", hosts))
    assert [r.wait() for r in runs] == [0, 0, 0], "\n".join(r.output for r in runs)
    assert [r["seq"] for r in read_records(tmp_path / "sink.jsonl")] == list(range(100))
    edge_lines = runs[0].output.splitlines()  # the live state of its peer, as it changed
    assert edge_lines.index("peer: source -> gpu: hop1.0: waiting") < edge_lines.index("peer: source -> gpu: hop1.0: connected")


def test_restarting_the_middle_machine_loses_and_duplicates_no_frame(tmp_path):
    graph = spread_graph(tmp_path, 47540, count=300, fps=60)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("sink", "edge")]
    gpu = MachineRun(tmp_path, graph, "gpu", hosts)
    wait_for_lines(tmp_path / "sink.jsonl", 80, runs + [gpu])
    gpu.proc.kill()  # the whole machine's runner goes: its nodes die with it
    gpu.wait()
    time.sleep(1.0)
    assert len(read_records(tmp_path / "sink.jsonl")) < 300  # stopped mid-stream
    again = MachineRun(tmp_path, graph, "gpu", hosts, tag="-again")
    assert [r.wait() for r in runs + [again]] == [0, 0, 0], "\n".join(r.output for r in runs + [again])
    records = read_records(tmp_path / "sink.jsonl")
    assert [r["seq"] for r in records] == list(range(300))  # every frame exactly once, in order
    assert all(r["stamp_ok"] for r in records)
    assert "peer: source -> gpu: hop1.0: disconnected" in runs[1].output


def test_check_lists_each_machine_with_its_address_and_nodes(tmp_path):
    graph = spread_graph(tmp_path, 47560)
    done = run_cli("check", graph, "--host", "edge=127.0.0.1", "--host", "gpu=127.0.0.2", "--host", "sink=127.0.0.3")
    assert done.returncode == 0, done.stderr
    assert "machine gpu at 127.0.0.2: hop1, hop2" in done.stdout


def _run_error(*args):
    done = run_cli(*args)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    return done.returncode, errors


def test_a_machine_without_an_address_is_named(tmp_path):
    graph = spread_graph(tmp_path, 47580)
    code, errors = _run_error(graph, "--machine", "edge", "--host", "edge=127.0.0.1", "--host", "gpu=127.0.0.2")
    assert code == 2
    assert errors == ["error: --hosts: field 'sink': machine 'sink' has no address: add `sink: ADDRESS` to the --hosts file "
                      "or pass --host sink=ADDRESS"]


def test_an_inventory_entry_for_an_unknown_machine_is_refused(tmp_path):
    graph = spread_graph(tmp_path, 47580)
    hosts = write_hosts(tmp_path / "hosts.yaml", dict(LOOPBACK, gpu2="127.0.0.4"))
    code, errors = _run_error(graph, "--machine", "edge", "--hosts", hosts)
    assert code == 2
    assert errors == [f"error: {hosts}: field 'gpu2': machine 'gpu2' is not in the graph; its machines: edge, gpu, sink"]


def test_a_hosts_file_is_read_with_the_graph_loaders_rules(tmp_path):
    """No aliases (a few lines that expand to gigabytes), no key given twice, no FIFO."""
    graph = spread_graph(tmp_path, 47580)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('a: &a ["x", "x"]\nb: &b [*a, *a]\nedge: 127.0.0.1\n')
    twice = tmp_path / "twice.yaml"
    twice.write_text("edge: 127.0.0.1\ngpu: 127.0.0.2\nedge: 127.0.0.3\n")
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for hosts, says in ((bomb, "anchors and aliases"), (twice, "'edge' is given twice"), (fifo, "not a regular file")):
        code, errors = _run_error(graph, "--machine", "edge", "--hosts", hosts)
        assert code == 2 and len(errors) == 1 and str(hosts) in errors[0] and says in errors[0], errors


def test_a_graph_node_on_an_undeclared_machine_is_refused(tmp_path):
    graph = spread_graph(tmp_path, 47580)
    graph.write_text(graph.read_text().replace("machine: gpu, inputs: {frame: hop1", "machine: gpu0, inputs: {frame: hop1"))
    code, errors = _run_error("check", graph)
    assert code == 2 and "node 'hop2' field 'machine': unknown machine 'gpu0' (did you mean 'gpu'?)" in errors[0]


def test_plain_tcp_to_a_non_loopback_address_needs_security_written_out(tmp_path):
    graph = spread_graph(tmp_path, 47580)
    code, errors = _run_error(graph, "--machine", "edge", "--host", "edge=127.0.0.1", "--host", "gpu=10.1.2.3", "--host", "sink=127.0.0.3")
    assert code == 2
    assert errors[0].startswith(f"error: {graph}: field 'security': machine 'gpu' is at 10.1.2.3, not a loopback address, "
                                "and the graph has no `security:`")


def test_an_address_that_is_not_this_computers_is_refused_before_starting(tmp_path):
    graph = spread_graph(tmp_path, 47580, extra="security: none\n")
    code, errors = _run_error(graph, "--machine", "gpu", "--host", "edge=127.0.0.1", "--host", "gpu=192.0.2.7", "--host", "sink=127.0.0.3")
    assert code == 2
    assert errors == ["error: --machine: field 'gpu': machine 'gpu' is at 192.0.2.7, which is not an address of this computer "
                      "(Cannot assign requested address); is --machine right, or the --hosts entry?"]


def test_a_port_already_taken_stops_the_machine_with_the_node_and_field(tmp_path):
    graph = spread_graph(tmp_path, 47600)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    squatter = zmq.Context.instance().socket(zmq.PULL)
    squatter.bind("tcp://127.0.0.2:47602")  # hop1's inbox: base_port + 2 * its index (1)
    try:
        run = MachineRun(tmp_path, graph, "gpu", hosts)
        assert run.wait(timeout=30) == 1
    finally:
        squatter.close(0)
    errors = [line for line in run.output.splitlines() if line.startswith("error:")]
    assert errors == ["error: node 'hop1' field 'port': cannot set up its sockets: Address already in use (addr='tcp://127.0.0.2:47602')"]


def test_restarting_the_last_machine_keeps_every_record_once_in_its_file(tmp_path):
    """The jsonl sink's machine dies mid-stream: the new sink appends after the last whole
    record, and the file still holds every seq exactly once, in order."""
    graph = spread_graph(tmp_path, 47740, count=300, fps=60)
    graph.write_text(graph.read_text().replace(
        f"uses: null, machine: sink, params: {{record: {tmp_path / 'sink.jsonl'}}}",
        f"uses: jsonl, machine: sink, params: {{path: {tmp_path / 'records.jsonl'}}}"))
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("edge", "gpu")]
    sink = MachineRun(tmp_path, graph, "sink", hosts)
    wait_for_lines(tmp_path / "records.jsonl", 80, runs + [sink])
    sink.proc.kill()
    sink.wait()
    time.sleep(1.0)
    assert len(read_records(tmp_path / "records.jsonl")) < 300
    again = MachineRun(tmp_path, graph, "sink", hosts, tag="-again")
    assert [r.wait() for r in runs + [again]] == [0, 0, 0], "\n".join(r.output for r in runs + [again])
    assert [r["seq"] for r in read_records(tmp_path / "records.jsonl")] == list(range(300))


def test_a_runner_removes_shared_memory_left_by_a_killed_runner(tmp_path, graph_run):
    """A runner killed with SIGKILL cannot unlink its pools; the next runner here does."""
    import glob
    import os

    victim = graph_run("""
name: victim
nodes:
  - {id: source, uses: synthetic, params: {width: 640, height: 480, count: 0, fps: 30}}
  - {id: sink, uses: null, params: {record: TMP/sink.jsonl}, inputs: {frame: source/frame}}
""")
    victim.wait_for_records(5)
    owners = {p: open(p).read() for p in glob.glob("/dev/shm/pg-*.owner")}
    run_id = next(os.path.basename(p)[3:-6] for p, pid in owners.items() if int(pid) == victim.proc.pid)
    assert glob.glob(f"/dev/shm/pg-{run_id}-*")
    victim.kill()  # SIGKILL: its pools stay behind
    time.sleep(0.5)
    assert glob.glob(f"/dev/shm/pg-{run_id}-*")
    later = MachineRun(tmp_path, spread_graph(tmp_path, 47760, count=5), None, None)
    assert later.wait() == 0, later.output
    assert glob.glob(f"/dev/shm/pg-{run_id}*") == []


def test_restarting_the_source_machine_resumes_where_the_consumers_stand(tmp_path):
    """The edge machine dies mid-stream. The consumers' hellos tell its new source the
    first seq they still lack, so it starts there (not at 0) and nothing is doubled."""
    graph = spread_graph(tmp_path, 47780, count=300, fps=60)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    runs = [MachineRun(tmp_path, graph, m, hosts) for m in ("gpu", "sink")]
    edge = MachineRun(tmp_path, graph, "edge", hosts)
    wait_for_lines(tmp_path / "sink.jsonl", 80, runs + [edge])
    edge.proc.kill()
    edge.wait()
    time.sleep(1.0)
    assert len(read_records(tmp_path / "sink.jsonl")) < 300
    again = MachineRun(tmp_path, graph, "edge", hosts, tag="-again")
    assert [r.wait() for r in runs + [again]] == [0, 0, 0], "\n".join(r.output for r in runs + [again])
    records = read_records(tmp_path / "sink.jsonl")
    assert [r["seq"] for r in records] == list(range(300)) and all(r["stamp_ok"] for r in records)
    assert 0 < again.metrics["nodes"]["source"]["frames_out"] <= 300 - 80  # resumed, not replayed


def test_a_machine_restarted_at_another_address_is_followed_by_its_peers(tmp_path):
    """What a cluster run does when Ray puts a lost group on another node: the runners
    watch their placement file (`--placement`, written by posegraph.cluster), and when a
    machine's address changes there, their links reconnect to the new one; the machine's
    new runner rejoins mid-stream as a restarted one does."""
    import json

    graph = spread_graph(tmp_path, 47580, count=300, fps=60)
    hosts = write_hosts(tmp_path / "hosts.yaml", LOOPBACK)
    placement = tmp_path / "placement.json"
    doc = {"machines": ["edge", "gpu", "sink"], "base_port": 47580, "hosts": dict(LOOPBACK),
           "nodes": {"source": "edge", "hop1": "gpu", "hop2": "gpu", "sink": "sink"}}
    placement.write_text(json.dumps(doc))
    runs = [MachineRun(tmp_path, graph, m, hosts, "--placement", str(placement)) for m in ("sink", "edge")]
    gpu = MachineRun(tmp_path, graph, "gpu", hosts)
    wait_for_lines(tmp_path / "sink.jsonl", 80, runs + [gpu])
    gpu.proc.kill()
    gpu.wait()
    doc["hosts"]["gpu"] = "127.0.0.4"
    (tmp_path / "placement.new").write_text(json.dumps(doc))
    (tmp_path / "placement.new").replace(placement)
    time.sleep(1.0)
    assert len(read_records(tmp_path / "sink.jsonl")) < 300
    again = MachineRun(tmp_path, graph, "gpu", hosts, "--host", "gpu=127.0.0.4", tag="-again")
    assert [r.wait() for r in runs + [again]] == [0, 0, 0], "\n".join(r.output for r in runs + [again])
    assert [r["seq"] for r in read_records(tmp_path / "sink.jsonl")] == list(range(300))
    assert all("machine 'gpu' moved from 127.0.0.2 to 127.0.0.4: links follow" in r.output for r in runs)
