"""Graph files: YAML -> a typed, validated GraphSpec, or one precise error.

Every check happens here, before any process starts, so a mistake in a graph costs a
one-line message naming file, line, node and field instead of a half-started pipeline.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import yaml

from .hints import did_you_mean
from .kinds import KindError, resolve_kind
from .node import Node, ParamError, check_param

GRAPH_FIELDS = {"name", "description", "nodes", "transport", "host", "base_port", "machines", "security"}
NODE_FIELDS = {"id", "uses", "params", "inputs", "queue", "replicas", "restart", "max_restarts", "transport", "port", "cpus",
               "cpus_shared", "machine"}
QUEUE_FIELDS = {"size", "policy"}
POLICIES = ("block", "latest")
RESTARTS = ("on-failure", "never")
TRANSPORTS = ("ipc", "tcp")
ID_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEFAULT_QUEUE = {"block": 4, "latest": 1}


class SpecError(Exception):
    """A graph that cannot run; str() is the one-line message shown to the user."""

    def __init__(self, message: str, file: str = "", line: int | None = None, node: str | None = None, field: str | None = None):
        self.file, self.line, self.node, self.field, self.detail = file, line, node, field, message
        head = (file or "<graph>") + (f":{line}" if line is not None else "")
        if node:
            head += f": node '{node}'"
        if field:
            head += (" " if node else ": ") + f"field '{field}'"
        super().__init__(f"{head}: {message}")


class _Mapping(dict):
    """A YAML mapping that remembers the line of each key (1-based)."""

    line: int = 0
    key_lines: dict


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings remember their lines and the raw text of scalar values."""

    def construct_line_mapping(self, node):
        mapping = _Mapping()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        mapping.raw = {k.value: v.value for k, v in node.value if isinstance(k, yaml.ScalarNode) and isinstance(v, yaml.ScalarNode)}
        yield mapping  # PyYAML fills a yielded container afterwards, which also allows anchors
        mapping.update(self.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)


def _line(mapping: Any, key: str | None = None) -> int | None:
    if isinstance(mapping, _Mapping):
        if key is not None and key in mapping.key_lines:
            return mapping.key_lines[key]
        return mapping.line
    return None


@dataclass
class InputSpec:
    """One input port. Several producers may feed it (one per stream, e.g. four cameras
    into one pose node): `sources` lists (producer id, producer port) in file order."""
    port: str
    sources: list[tuple[str, str]]
    policy: str = "block"
    size: int = 4


@dataclass
class NodeSpec:
    id: str
    uses: str
    kind: type
    params: dict[str, Any]
    inputs: dict[str, InputSpec]
    replicas: int = 1
    restart: str = "on-failure"
    max_restarts: int = 3
    transport: str = "ipc"
    port: int | None = None
    cpus: list[int] | None = None
    cpus_shared: bool = False  # False: the node's `cpus` are its own; other nodes run elsewhere
    machine: str | None = None
    line: int | None = None

    @property
    def is_source(self) -> bool:
        return self.kind.is_source()


@dataclass
class GraphSpec:
    name: str
    path: str
    nodes: dict[str, NodeSpec]
    graph: nx.MultiDiGraph
    transport: str = "ipc"
    host: str = "127.0.0.1"
    base_port: int = 5550
    streams: dict[str, int] = field(default_factory=dict)  # source id -> stream id
    machines: list[str] = field(default_factory=list)  # names only; addresses live in an inventory
    security: dict | None = None  # None: not set; {"mode": "none"} or {"mode": "curve", "dir": path}

    def topological_order(self) -> list[str]:
        return list(nx.topological_sort(self.graph))

    def consumers(self, node_id: str) -> list[tuple[str, InputSpec]]:
        """(consumer id, input) for every input wired to an output of node_id, in file order."""
        return [(n.id, i) for n in self.nodes.values() for i in n.inputs.values() if any(p == node_id for p, _ in i.sources)]

    def streams_reaching(self, node_id: str) -> list[int]:
        sources = [n for n in nx.ancestors(self.graph, node_id) | {node_id} if self.nodes[n].is_source]
        return sorted(self.streams[s] for s in sources)


def parse_value(text: str) -> Any:
    """A --set value as YAML would read it (numbers, booleans, lists), else the plain string."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_graph(path: str | Path, overrides: list[str] | None = None) -> GraphSpec:
    """Read, parse and validate a graph file; raise SpecError on the first problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("graph file not found", file) from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"graph file is not UTF-8 text (byte {exc.start})", file) from None
    except OSError as exc:
        raise SpecError(f"cannot read graph file: {exc.strerror}", file) from None
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"YAML syntax error: {problem}", file, mark.line + 1 if mark else None) from None
    return build_spec(doc, file, path.parent, overrides or [])


def build_spec(doc: Any, file: str, base_dir: Path, overrides: list[str]) -> GraphSpec:
    if not isinstance(doc, dict):
        raise SpecError("a graph file must be a mapping with a 'nodes' list", file, _line(doc))
    for key in doc:
        if key not in GRAPH_FIELDS:
            raise SpecError(f"unknown top-level field '{key}'{did_you_mean(str(key), GRAPH_FIELDS)}", file, _line(doc, key))
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise SpecError("'nodes' must be a non-empty list of nodes", file, _line(doc, "nodes"))
    transport = doc.get("transport", "ipc")
    if transport not in TRANSPORTS:
        raise SpecError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}", file, _line(doc, "transport"))
    base_port = doc.get("base_port", 5550)
    if not isinstance(base_port, int) or isinstance(base_port, bool) or not 1024 <= base_port <= 65000:
        raise SpecError(f"base_port must be an integer in 1024..65000, got {base_port!r}", file, _line(doc, "base_port"))
    host = doc.get("host", "127.0.0.1")
    if not isinstance(host, str):
        raise SpecError(f"host must be a string address, got {host!r}", file, _line(doc, "host"))
    machines = _machines(doc, file)
    security = _security(doc, file, base_dir)

    raw_by_id: dict[str, Any] = {}
    nodes: dict[str, NodeSpec] = {}
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise SpecError(f"node #{index + 1} must be a mapping with 'id' and 'uses'", file, _line(raw_nodes) if not isinstance(raw, _Mapping) else raw.line)
        node_id = raw.get("id")
        if node_id is None:
            raise SpecError(f"node #{index + 1} has no 'id'", file, _line(raw), None, "id")
        if not isinstance(node_id, str) or not ID_PATTERN.match(node_id):
            raise SpecError(f"id {node_id!r} must start with a letter and hold only letters, digits, '_' or '-'", file, _line(raw, "id"), None, "id")
        if node_id in raw_by_id:
            raise SpecError(f"duplicate id (first defined on line {_line(raw_by_id[node_id], 'id')})", file, _line(raw, "id"), node_id, "id")
        raw_by_id[node_id] = raw
        nodes[node_id] = _build_node(raw, node_id, file, base_dir, transport, machines)

    _apply_overrides(nodes, raw_by_id, overrides, file)
    spec = GraphSpec(name=str(doc.get("name", Path(file).stem)), path=file, nodes=nodes, graph=nx.MultiDiGraph(),
                     transport=transport, host=host, base_port=base_port, machines=machines, security=security)
    spec.streams = {n.id: i for i, n in enumerate(x for x in nodes.values() if x.is_source)}
    _wire(spec, raw_by_id, file)
    return spec


def _machines(doc: dict, file: str) -> list[str]:
    """`machines: [edge, gpu]`: names only, so the graph file never holds an address."""
    machines = doc.get("machines")
    if machines is None:
        return []
    line = _line(doc, "machines")
    if not isinstance(machines, list) or not machines:
        raise SpecError("machines must be a non-empty list of names, e.g. [edge, gpu] (addresses go in --hosts)", file, line, None, "machines")
    for name in machines:
        if not isinstance(name, str) or not ID_PATTERN.match(name):
            raise SpecError(f"machine name {name!r} must start with a letter and hold only letters, digits, '_' or '-'"
                            + (" (addresses belong in the --hosts inventory, not the graph)" if isinstance(name, str) and any(c in name for c in ".:") else ""),
                            file, line, None, "machines")
    if len(set(machines)) != len(machines):
        raise SpecError(f"machines lists a name twice: {machines}", file, line, None, "machines")
    return list(machines)


def _security(doc: dict, file: str, base_dir: Path) -> dict | None:
    """`security: none` or `security: {curve: KEYS_DIR}` (made by `runner.py keys KEYS_DIR`)."""
    if "security" not in doc:
        return None
    value = doc["security"]
    line = _line(doc, "security")
    if value is None or value == "none" or value is False:
        return {"mode": "none"}
    if isinstance(value, dict) and set(value) == {"curve"} and isinstance(value["curve"], str) and value["curve"]:
        folder = Path(os.path.expanduser(value["curve"]))
        if not folder.is_absolute() and not folder.exists() and (base_dir / folder).exists():
            folder = base_dir / folder  # relative to the graph file when not found from here
        return {"mode": "curve", "dir": str(folder)}
    raise SpecError(f"security must be `none` or {{curve: KEYS_DIR}}, got {value!r}", file, line, None, "security")


def _build_node(raw: dict, node_id: str, file: str, base_dir: Path, graph_transport: str, machines: list[str]) -> NodeSpec:
    for key in raw:
        if key not in NODE_FIELDS:
            raise SpecError(f"unknown field{did_you_mean(str(key), NODE_FIELDS)}", file, _line(raw, key), node_id, str(key))
    uses, kind = _node_kind(raw, node_id, file, base_dir)
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict):
        raise SpecError("params must be a mapping of name: value", file, _line(raw, "params"), node_id, "params")
    params = {}
    for name, value in params_raw.items():
        params[name] = _check_param(kind, node_id, name, value, file, _line(params_raw, name) or _line(raw, "params"))
    for name, decl in kind.PARAMS.items():
        params.setdefault(name, decl.default)
    replicas = raw.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 64:
        raise SpecError(f"replicas must be an integer in 1..64, got {replicas!r}", file, _line(raw, "replicas"), node_id, "replicas")
    if replicas > 1 and kind.is_source():
        raise SpecError("a source cannot be replicated", file, _line(raw, "replicas"), node_id, "replicas")
    restart = raw.get("restart", "on-failure")
    if restart not in RESTARTS:
        raise SpecError(f"restart must be one of {', '.join(RESTARTS)}, got {restart!r}", file, _line(raw, "restart"), node_id, "restart")
    max_restarts = raw.get("max_restarts", 3)
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or not 0 <= max_restarts <= 100:
        raise SpecError(f"max_restarts must be an integer in 0..100, got {max_restarts!r}", file, _line(raw, "max_restarts"), node_id, "max_restarts")
    transport = raw.get("transport", graph_transport)
    if transport not in TRANSPORTS:
        raise SpecError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}", file, _line(raw, "transport"), node_id, "transport")
    port = raw.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65000):
        raise SpecError(f"port must be an integer in 1024..65000, got {port!r}", file, _line(raw, "port"), node_id, "port")
    cpus, cpus_shared = _node_cpus(raw, node_id, file)
    return NodeSpec(id=node_id, uses=uses, kind=kind, params=params, inputs={}, replicas=replicas, restart=restart,
                    max_restarts=max_restarts, transport=transport, port=port, cpus=cpus, cpus_shared=cpus_shared,
                    machine=_node_machine(raw, node_id, file, machines), line=_line(raw))


def _node_kind(raw: dict, node_id: str, file: str, base_dir: Path) -> tuple[str, type]:
    uses = raw.get("uses")
    if uses is None and getattr(raw, "raw", {}).get("uses") == "null":
        uses = "null"  # YAML reads `uses: null` as None; the only kind it can mean is `null`
    if uses is None:
        raise SpecError("missing 'uses' (a kind name or path/to/file.py:ClassName)", file, _line(raw), node_id, "uses")
    try:
        return uses, resolve_kind(uses, base_dir)
    except KindError as exc:
        raise SpecError(str(exc), file, _line(raw, "uses"), node_id, "uses") from None


def _node_cpus(raw: dict, node_id: str, file: str) -> tuple[list[int] | None, bool]:
    cpus = raw.get("cpus")
    if cpus is not None:
        count = os.cpu_count() or 1
        if not (isinstance(cpus, list) and cpus and all(isinstance(c, int) and not isinstance(c, bool) and -count <= c < count for c in cpus)):
            raise SpecError(f"cpus must be a non-empty list of CPU numbers in 0..{count - 1}, or -1 for the last one "
                            f"(this machine has {count}), got {cpus!r}", file, _line(raw, "cpus"), node_id, "cpus")
        cpus = sorted({c % count for c in cpus})  # -1: the last CPU, whatever the machine
    cpus_shared = raw.get("cpus_shared", False)
    if not isinstance(cpus_shared, bool):
        raise SpecError(f"cpus_shared must be true or false, got {cpus_shared!r}", file, _line(raw, "cpus_shared"), node_id, "cpus_shared")
    if cpus_shared and cpus is None:
        raise SpecError("cpus_shared needs `cpus:` (the CPUs it would share)", file, _line(raw, "cpus_shared"), node_id, "cpus_shared")
    return cpus, cpus_shared


def _node_machine(raw: dict, node_id: str, file: str, machines: list[str]) -> str | None:
    machine = raw.get("machine")
    if machine is not None and not machines:
        raise SpecError("machine is set but the graph declares no `machines: [...]` list", file, _line(raw, "machine"), node_id, "machine")
    if machine is not None and machine not in machines:
        raise SpecError(f"unknown machine {machine!r}{did_you_mean(str(machine), machines)}; the graph's machines: {', '.join(machines)}",
                        file, _line(raw, "machine"), node_id, "machine")
    if machines and machine is None:
        machine = machines[0]  # unplaced nodes run on the first machine listed
    return machine


def _check_param(kind: type[Node], node_id: str, name: Any, value: Any, file: str, line: int | None) -> Any:
    try:
        return check_param(kind, name, value)
    except ParamError as exc:
        raise SpecError(str(exc), file, line, node_id, f"params.{name}") from None


def _apply_overrides(nodes: dict[str, NodeSpec], raw_by_id: dict, overrides: list[str], file: str) -> None:
    for item in overrides:
        target, eq, text = item.partition("=")
        node_id, dot, name = target.partition(".")
        if not eq or not dot or not node_id or not name:
            raise SpecError(f"{item!r} must look like ID.PARAM=VALUE", "--set")
        if node_id not in nodes:
            raise SpecError(f"{item!r}: no node '{node_id}'{did_you_mean(node_id, nodes)}", "--set")
        node = nodes[node_id]
        node.params[name] = _check_param(node.kind, node_id, name, parse_value(text), "--set", None)


def _wire(spec: GraphSpec, raw_by_id: dict, file: str) -> None:
    graph = spec.graph
    for node_id in spec.nodes:
        graph.add_node(node_id)
    for node_id, node in spec.nodes.items():
        raw = raw_by_id[node_id]
        kind = node.kind
        inputs_raw = raw.get("inputs") or {}
        if not isinstance(inputs_raw, dict):
            raise SpecError("inputs must be a mapping of port: producer/port", file, _line(raw, "inputs"), node_id, "inputs")
        if inputs_raw and kind.is_source():
            raise SpecError(f"kind '{node.uses}' is a source and takes no inputs", file, _line(raw, "inputs"), node_id, "inputs")
        queue_raw = raw.get("queue") or {}
        if not isinstance(queue_raw, dict):
            raise SpecError("queue must be a mapping of port: {size, policy}", file, _line(raw, "queue"), node_id, "queue")
        for port, refs in inputs_raw.items():
            node.inputs[port] = InputSpec(port, _sources(spec, node, port, refs, file, _line(inputs_raw, port)))
        for port, q in queue_raw.items():
            _queue(node, port, q, file, _line(queue_raw, port))
        missing = [p for p in kind.INPUTS if p not in node.inputs and p not in kind.OPTIONAL_INPUTS]
        if missing:
            raise SpecError(f"input port '{missing[0]}' is wired to nothing (add inputs: {{{missing[0]}: producer/port}})", file, _line(raw, "inputs") or _line(raw), node_id, f"inputs.{missing[0]}")
        if kind.INPUTS and not node.inputs:  # every input optional, yet none wired: it would see nothing
            raise SpecError(f"no input is wired; kind '{node.uses}' takes: {', '.join(kind.INPUTS)}", file, _line(raw), node_id, "inputs")
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        _check_streams(spec, raw_by_id, file)
        return
    path = " -> ".join([e[0] for e in cycle] + [cycle[-1][1]])
    first = cycle[-1][1]
    raise SpecError(f"the graph has a cycle: {path}", file, _line(raw_by_id[first], "inputs"), first, "inputs")


def _sources(spec: GraphSpec, node: NodeSpec, port, refs, file: str, line: int | None) -> list[tuple[str, str]]:
    """The (producer, producer port) pairs an input port is wired to, each checked; edges added."""
    node_id, kind = node.id, node.kind
    if port not in kind.INPUTS:
        known = ", ".join(kind.INPUTS) or "none"
        raise SpecError(f"kind '{node.uses}' has no input port '{port}'{did_you_mean(str(port), kind.INPUTS)}; inputs: {known}", file, line, node_id, f"inputs.{port}")
    if isinstance(refs, list) and not refs:
        raise SpecError("an empty list; give producer_id/output_port or a list of them (one per stream)", file, line, node_id, f"inputs.{port}")
    sources = []
    for ref in refs if isinstance(refs, list) else [refs]:
        if not isinstance(ref, str) or ref.count("/") != 1 or not all(ref.split("/")):
            raise SpecError(f"{ref!r} must be producer_id/output_port (or a list of them)", file, line, node_id, f"inputs.{port}")
        producer, producer_port = ref.split("/")
        if producer not in spec.nodes:
            raise SpecError(f"wired to '{ref}' but there is no node '{producer}'{did_you_mean(producer, spec.nodes)}", file, line, node_id, f"inputs.{port}")
        pkind = spec.nodes[producer].kind
        if producer_port not in pkind.OUTPUTS:
            known = ", ".join(pkind.OUTPUTS) or "none"
            raise SpecError(f"node '{producer}' ({spec.nodes[producer].uses}) has no output port '{producer_port}'{did_you_mean(producer_port, pkind.OUTPUTS)}; outputs: {known}", file, line, node_id, f"inputs.{port}")
        if producer == node_id:
            raise SpecError("a node cannot take its own output as input (cycle)", file, line, node_id, f"inputs.{port}")
        if any(p == producer for p, _ in sources):
            raise SpecError(f"'{producer}' is listed twice", file, line, node_id, f"inputs.{port}")
        sources.append((producer, producer_port))
        spec.graph.add_edge(producer, node_id, key=port, producer_port=producer_port)
    return sources


def _queue(node: NodeSpec, port, q, file: str, line: int | None) -> None:
    """An input's `queue: {size, policy}`, checked and set."""
    node_id = node.id
    if port not in node.inputs:
        raise SpecError(f"queue for '{port}', which is not a wired input{did_you_mean(str(port), node.inputs)}", file, line, node_id, f"queue.{port}")
    if not isinstance(q, dict):
        raise SpecError("must be a mapping {size: N, policy: block|latest}", file, line, node_id, f"queue.{port}")
    for key in q:
        if key not in QUEUE_FIELDS:
            raise SpecError(f"unknown queue field{did_you_mean(str(key), QUEUE_FIELDS)}", file, _line(q, key), node_id, f"queue.{port}.{key}")
    policy = q.get("policy", "block")
    if policy not in POLICIES:
        raise SpecError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}", file, _line(q, "policy"), node_id, f"queue.{port}.policy")
    size = q.get("size", DEFAULT_QUEUE[policy])
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1024:
        raise SpecError(f"size must be an integer in 1..1024, got {size!r}", file, _line(q, "size"), node_id, f"queue.{port}.size")
    node.inputs[port].policy, node.inputs[port].size = policy, size


def _check_streams(spec: GraphSpec, raw_by_id: dict, file: str) -> None:
    """A join fires per (stream, seq), so every input of a node must carry the same
    streams, and the producers merged on one port must carry different ones."""
    names = {sid: name for name, sid in spec.streams.items()}
    for node_id, node in spec.nodes.items():
        inputs_raw = raw_by_id[node_id].get("inputs") or {}
        carried = {}
        for port, inp in node.inputs.items():
            seen: dict[int, str] = {}
            for producer, _ in inp.sources:
                for sid in spec.streams_reaching(producer):
                    if sid in seen:
                        raise SpecError(f"'{seen[sid]}' and '{producer}' both carry stream '{names[sid]}'; producers merged on one "
                                        "port must carry different streams", file, _line(inputs_raw, port), node_id, f"inputs.{port}")
                    seen[sid] = producer
            carried[port] = set(seen)
        ports = list(carried)
        reaching = len(spec.streams_reaching(node_id))
        if node.kind.is_stateful() and node.replicas > reaching and not node.kind.is_source():
            raise SpecError(f"kind '{node.uses}' is stateful (its output depends on earlier frames of a stream), so its replicas "
                            f"are sharded by stream; {reaching} stream(s) reach it, so at most {reaching} replica(s) can work",
                            file, _line(raw_by_id[node_id], "replicas"), node_id, "replicas")
        for port in ports[1:]:
            if carried[port] != carried[ports[0]]:
                only = sorted(names[s] for s in carried[port] ^ carried[ports[0]])
                raise SpecError(f"inputs '{ports[0]}' and '{port}' carry different streams (only one has {', '.join(only)}); "
                                "every input of a node must carry the same streams, or its joins never complete",
                                file, _line(inputs_raw, port), node_id, f"inputs.{port}")
