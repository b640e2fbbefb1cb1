"""Graph files: YAML -> a typed, validated GraphSpec, or one precise error.

Every check happens here, before any process starts, so a mistake in a graph costs a
one-line message naming file, line, node and field instead of a half-started pipeline.
"""
from __future__ import annotations

import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from .hints import did_you_mean
from .kinds import KindError, is_file_reference, node_file, resolve_kind
from .node import Node, ParamError, brief, check_param, packet_type_text

GRAPH_FIELDS = {"name", "description", "nodes", "transport", "host", "base_port", "machines", "security"}
NODE_FIELDS = {"id", "uses", "params", "inputs", "queue", "replicas", "restart", "max_restarts", "transport", "port", "cpus",
               "cpus_shared", "machine", "resources", "colocate"}
QUEUE_FIELDS = {"size", "policy"}
POLICIES = ("block", "latest")
RESTARTS = ("on-failure", "never")
TRANSPORTS = ("ipc", "tcp")
ID_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")  # always fullmatch: `$` would accept a final newline
DEFAULT_QUEUE = {"block": 4, "latest": 1}
MAX_FILE_BYTES = 1_000_000  # a graph is a page of YAML; anything near this is not a graph
MAX_DEPTH = 64  # nesting levels of YAML collections
MAX_VALUES = 50_000  # YAML values (scalars and collections) in one file
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line(text: str, limit: int = 1000) -> str:
    """`text` cut to `limit` characters with its control characters (newlines among them)
    escaped, so whatever a graph holds, an error about it stays one line."""
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SpecError(Exception):
    """A graph that cannot run; str() is the one-line message shown to the user."""

    def __init__(self, message: str, file: str = "", line: int | None = None, node: str | None = None, field: str | None = None):
        file, message = one_line(str(file), 300), one_line(message)
        node = one_line(node, 100) if node else node
        field = one_line(field, 100) if field else field
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


class LoadError(yaml.YAMLError):
    """A YAML document a graph file may not hold (aliases, too deep, a key given twice...),
    with the 1-based line and, when known, the node and field it is in."""

    def __init__(self, message: str, mark=None, node: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message, self.line, self.node, self.field = message, mark.line + 1 if mark else None, node, field


try:  # libyaml scans and parses in C: a large file is read in a fraction of the pure-Python time
    from yaml._yaml import CParser as _Parser
except ImportError:  # PyYAML built without libyaml
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Parser(Reader, Scanner, Parser):
        def __init__(self, stream):
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)


class _LineLoader(Composer, _Parser, SafeConstructor, Resolver):
    """A safe YAML loader for graph files, within budgets, so that no file makes it run for
    minutes, exhaust memory or recurse out of the stack:

    - anchors and aliases are refused (a graph never needs them, and aliases nested in
      aliases expand exponentially: the "billion laughs");
    - collections nest at most MAX_DEPTH deep, and a file holds at most MAX_VALUES values;
    - a mapping key given twice is an error naming its line (YAML keeps the last one silently);
    - integers are 64-bit; a value its constructor cannot read is an error naming its line.

    Its mappings remember their lines and the raw text of scalar values."""

    def __init__(self, stream):
        _Parser.__init__(self, stream)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        Composer.__init__(self)
        self.depth = self.values = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise LoadError("YAML anchors and aliases (&name, *name) are not allowed in a graph file; write the value out",
                            event.start_mark)
        self.values += 1
        if self.values > MAX_VALUES:
            raise LoadError(f"more than {MAX_VALUES} YAML values; a graph file this large is not a graph", event.start_mark)
        if self.depth >= MAX_DEPTH:
            raise LoadError(f"YAML nested more than {MAX_DEPTH} levels deep", event.start_mark)
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        self._check_keys(node)
        return self.construct_document(node)

    def _check_keys(self, root) -> None:
        """Every mapping's keys: plain values, none given twice. The node id and field path
        of a duplicate are named when it sits in a node of the `nodes` list."""
        def walk(node, node_id, path):
            if isinstance(node, ScalarNode):
                try:
                    self.construct_object(node)  # kept for construct_document; a bad value is named here with its place
                except LoadError as exc:
                    exc.node, exc.field = node_id, path
                    raise
            elif isinstance(node, SequenceNode):
                for item in node.value:
                    walk(item, node_id, path)
            elif isinstance(node, MappingNode):
                seen: dict = {}
                for key_node, value in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    if not isinstance(key_node, ScalarNode):
                        raise LoadError("a mapping key must be a plain name or value", key_node.start_mark, node_id, path)
                    walk(key_node, node_id, path)
                    key = self.construct_object(key_node)
                    sub = f"{path}.{key}" if path else str(key)
                    if key in seen:
                        raise LoadError(f"{brief(key)} is given twice (first on line {seen[key]}); YAML would keep only the last",
                                        key_node.start_mark, node_id, sub)
                    seen[key] = key_node.start_mark.line + 1
                    if node is root and key == "nodes" and isinstance(value, SequenceNode):
                        for item in value.value:
                            walk(item, _scalar(item, "id"), None)
                    else:
                        walk(value, node_id, sub)

        walk(root, None, None)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. `!!int abc`, a date like 2024-13-45, an int of 5,000 digits
            raise LoadError(f"cannot read {brief(getattr(node, 'value', ''))} as {node.tag.rpartition(':')[2]}: "
                            f"{str(exc)[:120]}", node.start_mark) from None

    def construct_yaml_int(self, node):
        if len(node.value) > 70:  # longer than any 64-bit integer is written (0b and 64 digits), not converted at all
            raise LoadError(f"integer {brief(node.value)} is out of range (numbers in a graph fit in 64 bits)", node.start_mark)
        value = super().construct_yaml_int(node)
        if not -2**63 <= value < 2**63:
            raise LoadError(f"integer {brief(value)} is out of range (numbers in a graph fit in 64 bits)", node.start_mark)
        return value

    def construct_line_mapping(self, node):
        mapping = _Mapping()
        mapping.line = node.start_mark.line + 1
        mapping.key_lines = {k.value: k.start_mark.line + 1 for k, _ in node.value if isinstance(k, ScalarNode)}
        mapping.raw = {k.value: v.value for k, v in node.value if isinstance(k, ScalarNode) and isinstance(v, ScalarNode)}
        yield mapping  # PyYAML fills a yielded container afterwards
        mapping.update(self.construct_mapping(node))


_LineLoader.add_constructor("tag:yaml.org,2002:map", _LineLoader.construct_line_mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)


def _scalar(node, key: str) -> str | None:
    """The text of `key`'s value in a composed YAML mapping, when it is a plain scalar."""
    if isinstance(node, MappingNode):
        for k, v in node.value:
            if isinstance(k, ScalarNode) and k.value == key and isinstance(v, ScalarNode):
                return v.value
    return None


def load_yaml(text: str) -> Any:
    """YAML text read with the graph loader's rules (see _LineLoader); yaml.YAMLError if it breaks one."""
    loader = _LineLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


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
    resources: dict[str, float] = field(default_factory=dict)  # what a cluster run asks Ray for: cpu, gpu, custom
    colocate: list[str] = field(default_factory=list)  # nodes this one shares a cluster actor (and ipc/shm) with
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
    warnings: list[str] = field(default_factory=list)  # what `check` warns of (the graph runs anyway)

    def topological_order(self) -> list[str]:
        return list(nx.topological_sort(self.graph))

    def consumers(self, node_id: str) -> list[tuple[str, InputSpec]]:
        """(consumer id, input) for every input wired to an output of node_id, in file order."""
        return [(n.id, i) for n in self.nodes.values() for i in n.inputs.values() if any(p == node_id for p, _ in i.sources)]

    def streams_reaching(self, node_id: str) -> list[int]:
        sources = [n for n in nx.ancestors(self.graph, node_id) | {node_id} if self.nodes[n].is_source]
        return sorted(self.streams[s] for s in sources)


def parse_value(text: str) -> Any:
    """A --set value as YAML would read it (numbers, booleans, lists), else the plain string;
    read with the graph loader's rules, so an alias bomb on the command line is just text.
    A lone `-` (stdout, as `records.path=-`) stays the string, not YAML's list of one null."""
    if text.strip() == "-":
        return "-"
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def package_root() -> Path:
    """The folder that holds the bundled graphs/ (and models/, data/): the checkout's root, or
    the installed package itself in a wheel (setup.cfg maps them into it)."""
    package = Path(__file__).resolve().parent
    return package if (package / "graphs").is_dir() else package.parent


def bundled_graph(path: Path) -> Path:
    """`path` as given when it exists (or is absolute); else the package's copy of it
    (`graphs/demo.yaml` from any folder), when there is one."""
    if path.is_absolute() or path.exists():
        return path
    bundled = package_root() / path
    return bundled if bundled.is_file() else path


def read_graph_text(path: Path, file: str) -> str:
    """The text of a graph file, or SpecError. Only a regular file of at most MAX_FILE_BYTES
    is read: a FIFO would block for ever and /dev/zero would fill memory, so the type and
    size are looked at (os.stat) before the file is opened."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise SpecError(f"graph file not found (nor in the package: {package_root() / path})"
                        if not path.is_absolute() else "graph file not found", file) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise SpecError(f"cannot read graph file: {getattr(exc, 'strerror', None) or exc}", file) from None
    if not stat.S_ISREG(info.st_mode):
        raise SpecError(f"cannot read graph file: it is {_file_kind(info.st_mode)}, not a regular file", file)
    too_big = f"graph file is larger than {MAX_FILE_BYTES} bytes; a graph file is a page of YAML"
    if info.st_size > MAX_FILE_BYTES:
        raise SpecError(too_big, file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # O_NONBLOCK: a FIFO swapped in never blocks
        with os.fdopen(fd, "rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise SpecError("cannot read graph file: it is not a regular file", file)
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read graph file: {exc.strerror or exc}", file) from None
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(too_big, file)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"graph file is not UTF-8 text (byte {exc.start})", file) from None


def load_graph(path: str | Path, overrides: list[str] | None = None, allow_outside: bool = False) -> GraphSpec:
    """Read, parse and validate a graph file; raise SpecError on the first problem.

    `allow_outside`: let `uses:` name node files outside the graph file's folder and the
    current directory (a node file is code, and checking a graph imports it)."""
    path = bundled_graph(Path(path))
    file = str(path)
    text = read_graph_text(path, file)
    try:
        doc = load_yaml(text)
    except LoadError as exc:
        raise SpecError(exc.message, file, exc.line, exc.node, exc.field) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unreadable YAML"])[0]
        if "nesting depth" in problem:  # libyaml's own limit (PyYAML >= 6.0.4) can come before ours
            raise SpecError(f"YAML nested more than {MAX_DEPTH} levels deep", file, mark.line + 1 if mark else None) from None
        raise SpecError(f"YAML syntax error: {problem}", file, mark.line + 1 if mark else None) from None
    return build_spec(doc, file, path.parent, overrides or [], allow_outside)


def build_spec(doc: Any, file: str, base_dir: Path, overrides: list[str], allow_outside: bool = False) -> GraphSpec:
    if not isinstance(doc, dict):
        raise SpecError("a graph file must be a mapping with a 'nodes' list", file, _line(doc))
    for key in doc:
        if key not in GRAPH_FIELDS:
            raise SpecError(f"unknown top-level field '{key}'{did_you_mean(str(key), GRAPH_FIELDS)}", file, _line(doc, key))
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise SpecError("'nodes' must be a non-empty list of nodes", file, _line(doc, "nodes"), None, "nodes")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= 200 or CONTROL.search(name)):
        raise SpecError(f"name must be one line of text (1 to 200 characters), got {brief(name)}", file, _line(doc, "name"), None, "name")
    description = doc.get("description")
    if description is not None and not isinstance(description, str):
        raise SpecError(f"description must be text, got {brief(description)}", file, _line(doc, "description"), None, "description")
    transport = doc.get("transport", "ipc")
    if transport not in TRANSPORTS:
        raise SpecError(f"transport must be one of {', '.join(TRANSPORTS)}, got {brief(transport)}", file, _line(doc, "transport"), None, "transport")
    base_port = doc.get("base_port", 5550)
    if not isinstance(base_port, int) or isinstance(base_port, bool) or not 1024 <= base_port <= 65000:
        raise SpecError(f"base_port must be an integer in 1024..65000, got {brief(base_port)}", file, _line(doc, "base_port"), None, "base_port")
    host = doc.get("host", "127.0.0.1")
    if not isinstance(host, str) or not 1 <= len(host) <= 253 or re.search(r"\s", host) or CONTROL.search(host):
        raise SpecError(f"host must be an address (a host name or IP), got {brief(host)}", file, _line(doc, "host"), None, "host")
    machines = _machines(doc, file)
    security = _security(doc, file, base_dir)

    # Every node's own fields first, so that a mistake anywhere in the file is reported
    # before any user node file (code) is imported.
    raw_by_id: dict[str, Any] = {}
    fields: dict[str, dict] = {}
    for index, raw in enumerate(raw_nodes):
        if not isinstance(raw, dict):
            raise SpecError(f"node #{index + 1} must be a mapping with 'id' and 'uses'", file, _line(doc, "nodes"), None, "nodes")
        node_id = raw.get("id")
        if node_id is None:
            raise SpecError(f"node #{index + 1} has no 'id'", file, _line(raw), None, "id")
        if not isinstance(node_id, str) or not ID_PATTERN.fullmatch(node_id):
            raise SpecError(f"id {brief(node_id)} must start with a letter and hold only letters, digits, '_' or '-'", file, _line(raw, "id"), None, "id")
        if node_id in raw_by_id:
            raise SpecError(f"duplicate id (first defined on line {_line(raw_by_id[node_id], 'id')})", file, _line(raw, "id"), node_id, "id")
        raw_by_id[node_id] = raw
        fields[node_id] = _node_fields(raw, node_id, file, base_dir, transport, machines, allow_outside)
    nodes = {node_id: _build_node(raw_by_id[node_id], node_id, file, base_dir, fields[node_id]) for node_id in raw_by_id}

    _apply_overrides(nodes, raw_by_id, overrides, file)
    spec = GraphSpec(name=name or Path(file).stem, path=file, nodes=nodes, graph=nx.MultiDiGraph(),
                     transport=transport, host=host, base_port=base_port, machines=machines, security=security)
    spec.streams = {n.id: i for i, n in enumerate(x for x in nodes.values() if x.is_source)}
    _wire(spec, raw_by_id, file)
    _check_ports(spec, raw_by_id, file)
    for node in nodes.values():
        for other in node.colocate:
            if other not in nodes or other == node.id:
                raise SpecError(f"colocate names {brief(other)}, " + ("the node itself" if other == node.id else
                                f"which is not a node{did_you_mean(other, list(nodes))}"),
                                file, _line(raw_by_id[node.id], "colocate"), node.id, "colocate")
    return spec


def tcp_ports(spec: GraphSpec, placed: bool) -> dict[tuple[str, int], int]:
    """(node id, replica) -> the first of the two tcp ports that instance binds (inbox, then
    back-channel), for the instances that bind tcp: the nodes on tcp, and with `placed` (a
    run with --machine) also those with a neighbour on another machine. A node's `port`
    gives its replica r port + 2r; the others take base_port + 2 * (instance's position)."""
    ports = {}
    index = 0
    for node in spec.nodes.values():
        neighbours = set(spec.graph.predecessors(node.id)) | set(spec.graph.successors(node.id))
        remote = placed and any(spec.nodes[n].machine != node.machine for n in neighbours)
        for r in range(node.replicas):
            if node.transport == "tcp" or remote:
                ports[node.id, r] = node.port + 2 * r if node.port else spec.base_port + 2 * index
            index += 1
    return ports


def _check_ports(spec: GraphSpec, raw_by_id: dict, file: str) -> None:
    """No two instances on one machine bind the same tcp port (they would fail at start).
    Machines are told apart only when the graph declares them (a --machine run)."""
    taken: dict[tuple[str | None, int], str] = {}  # (machine, port) -> node id
    for (node_id, replica), first in tcp_ports(spec, placed=bool(spec.machines)).items():
        node = spec.nodes[node_id]
        raw = raw_by_id[node_id]
        for port in (first, first + 1):
            if port > 65535:
                raise SpecError(f"replica {replica} would bind tcp port {port}, above 65535; lower `port` or base_port",
                                file, _line(raw, "port"), node_id, "port")
            other = taken.get((node.machine, port))
            if other is not None and other != node_id:
                where = f" on machine '{node.machine}'" if node.machine else ""
                raise SpecError(f"replica {replica} would bind tcp port {port}, which node '{other}' binds too{where} "
                                "(each replica binds two ports: port + 2 * replica and the next)",
                                file, _line(raw, "port"), node_id, "port")
            taken[node.machine, port] = node_id


def _machines(doc: dict, file: str) -> list[str]:
    """`machines: [edge, gpu]`: names only, so the graph file never holds an address."""
    machines = doc.get("machines")
    if machines is None:
        return []
    line = _line(doc, "machines")
    if not isinstance(machines, list) or not machines:
        raise SpecError("machines must be a non-empty list of names, e.g. [edge, gpu] (addresses go in --hosts)", file, line, None, "machines")
    for name in machines:
        if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            raise SpecError(f"machine name {brief(name)} must start with a letter and hold only letters, digits, '_' or '-'"
                            + (" (addresses belong in the --hosts inventory, not the graph)" if isinstance(name, str) and any(c in name for c in ".:") else ""),
                            file, line, None, "machines")
    if len(set(machines)) != len(machines):
        raise SpecError(f"machines lists a name twice: {brief(machines)}", file, line, None, "machines")
    return list(machines)


def _security(doc: dict, file: str, base_dir: Path) -> dict | None:
    """`security: none` or `security: {curve: KEYS_DIR}` (made by `runner.py keys KEYS_DIR`)."""
    if "security" not in doc:
        return None
    value = doc["security"]
    line = _line(doc, "security")
    if value is None or value == "none" or value is False:
        return {"mode": "none"}
    if isinstance(value, dict) and set(value) == {"curve"} and isinstance(value["curve"], str) and value["curve"] \
            and not CONTROL.search(value["curve"]):
        folder = Path(os.path.expanduser(value["curve"]))
        if not folder.is_absolute() and not _exists(folder) and _exists(base_dir / folder):
            folder = base_dir / folder  # relative to the graph file when not found from here
        return {"mode": "curve", "dir": str(folder)}
    raise SpecError(f"security must be `none` or {{curve: KEYS_DIR}}, got {brief(value)}", file, line, None, "security")


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _node_fields(raw: dict, node_id: str, file: str, base_dir: Path, graph_transport: str, machines: list[str],
                 allow_outside: bool) -> dict:
    """A node's fields that need no kind, checked: nothing of the node's code runs here."""
    for key in raw:
        if key not in NODE_FIELDS:
            raise SpecError(f"unknown field{did_you_mean(str(key), NODE_FIELDS)}", file, _line(raw, key), node_id, str(key))
    for key, shape in (("params", "name: value"), ("inputs", "port: producer/port"), ("queue", "port: {size, policy}")):
        if raw.get(key) is not None and not isinstance(raw[key], dict):  # absent or empty (`params:`) means none
            raise SpecError(f"{key} must be a mapping of {shape}", file, _line(raw, key), node_id, key)
    replicas = raw.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 64:
        raise SpecError(f"replicas must be an integer in 1..64, got {brief(replicas)}", file, _line(raw, "replicas"), node_id, "replicas")
    restart = raw.get("restart", "on-failure")
    if restart not in RESTARTS:
        raise SpecError(f"restart must be one of {', '.join(RESTARTS)}, got {brief(restart)}", file, _line(raw, "restart"), node_id, "restart")
    max_restarts = raw.get("max_restarts", 3)
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or not 0 <= max_restarts <= 100:
        raise SpecError(f"max_restarts must be an integer in 0..100, got {brief(max_restarts)}", file, _line(raw, "max_restarts"), node_id, "max_restarts")
    transport = raw.get("transport", graph_transport)
    if transport not in TRANSPORTS:
        raise SpecError(f"transport must be one of {', '.join(TRANSPORTS)}, got {brief(transport)}", file, _line(raw, "transport"), node_id, "transport")
    port = raw.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1024 <= port <= 65000):
        raise SpecError(f"port must be an integer in 1024..65000, got {brief(port)}", file, _line(raw, "port"), node_id, "port")
    cpus, cpus_shared = _node_cpus(raw, node_id, file)
    return {"uses": _node_uses(raw, node_id, file, base_dir, allow_outside), "replicas": replicas, "restart": restart,
            "max_restarts": max_restarts, "transport": transport, "port": port, "cpus": cpus, "cpus_shared": cpus_shared,
            "machine": _node_machine(raw, node_id, file, machines), "resources": _node_resources(raw, node_id, file),
            "colocate": _node_colocate(raw, node_id, file)}


def _node_resources(raw: dict, node_id: str, file: str) -> dict[str, float]:
    """`resources: {cpu: 1, gpu: 0.5, NAME: 1}`: what the node asks of a Ray cluster (--cluster)."""
    resources = raw.get("resources")
    if resources is None:
        return {}
    line = _line(raw, "resources")
    if not isinstance(resources, dict):
        raise SpecError("resources must be a mapping such as {cpu: 1, gpu: 0.5, my_camera: 1}", file, line, node_id, "resources")
    for name, amount in resources.items():
        if not isinstance(name, str) or not ID_PATTERN.fullmatch(name):
            raise SpecError(f"resource name {brief(name)} must start with a letter and hold only letters, digits, '_' or '-'",
                            file, line, node_id, "resources")
        if not isinstance(amount, (int, float)) or isinstance(amount, bool) or not 0 <= amount <= 1024:
            raise SpecError(f"resource {name}: amount must be a number in 0..1024, got {brief(amount)}", file, line, node_id, "resources")
    return {str(k): float(v) for k, v in resources.items()}


def _node_colocate(raw: dict, node_id: str, file: str) -> list[str]:
    colocate = raw.get("colocate")
    if colocate is None:
        return []
    if not isinstance(colocate, list) or not all(isinstance(c, str) for c in colocate):
        raise SpecError("colocate must be a list of node ids, e.g. [pose]", file, _line(raw, "colocate"), node_id, "colocate")
    return list(colocate)


def _build_node(raw: dict, node_id: str, file: str, base_dir: Path, fields: dict) -> NodeSpec:
    """The node with its kind (importing a user node file) and its params checked against it."""
    try:
        kind = resolve_kind(fields["uses"], base_dir)
    except KindError as exc:
        raise SpecError(str(exc), file, _line(raw, "uses"), node_id, "uses") from None
    params_raw = raw.get("params") or {}
    params = {}
    for name, value in params_raw.items():
        params[name] = _check_param(kind, node_id, name, value, file, _line(params_raw, name) or _line(raw, "params"))
    for name, decl in kind.PARAMS.items():
        params.setdefault(name, decl.default)
    if fields["replicas"] > 1 and kind.is_source():
        raise SpecError("a source cannot be replicated", file, _line(raw, "replicas"), node_id, "replicas")
    return NodeSpec(id=node_id, kind=kind, params=params, inputs={}, line=_line(raw), **fields)


def _node_uses(raw: dict, node_id: str, file: str, base_dir: Path, allow_outside: bool) -> str:
    """`uses:`, checked without running anything: a kind name, or a node file that exists
    inside the graph file's folder or the current directory (unless allow_outside)."""
    uses = raw.get("uses")
    if uses is None and getattr(raw, "raw", {}).get("uses") == "null":
        uses = "null"  # YAML reads `uses: null` as None; the only kind it can mean is `null`
    if uses is None:
        raise SpecError("missing 'uses' (a kind name or path/to/file.py:ClassName)", file, _line(raw), node_id, "uses")
    line = _line(raw, "uses")
    if not isinstance(uses, str) or not uses or len(uses) > 4096 or CONTROL.search(uses):
        raise SpecError(f"must be a kind name or path/to/file.py:ClassName, got {brief(uses)}", file, line, node_id, "uses")
    if not is_file_reference(uses):
        return uses
    try:
        path, _ = node_file(uses, base_dir)
    except KindError as exc:
        raise SpecError(str(exc), file, line, node_id, "uses") from None
    roots = [Path(base_dir).resolve()]
    try:
        roots.append(Path.cwd().resolve())
    except OSError:  # the current directory was removed
        pass
    if not allow_outside and not any(path.is_relative_to(root) for root in roots):
        raise SpecError(f"node file {path} is outside the graph file's folder and the current directory; "
                        "node files are code that check and run import: pass --allow-outside to use it",
                        file, line, node_id, "uses")
    return uses


def _node_cpus(raw: dict, node_id: str, file: str) -> tuple[list[int] | None, bool]:
    cpus = raw.get("cpus")
    if cpus is not None:
        count = os.cpu_count() or 1
        if not (isinstance(cpus, list) and cpus and all(isinstance(c, int) and not isinstance(c, bool) and -count <= c < count for c in cpus)):
            raise SpecError(f"cpus must be a non-empty list of CPU numbers in 0..{count - 1}, or -1 for the last one "
                            f"(this machine has {count}), got {brief(cpus)}", file, _line(raw, "cpus"), node_id, "cpus")
        cpus = sorted({c % count for c in cpus})  # -1: the last CPU, whatever the machine
    cpus_shared = raw.get("cpus_shared", False)
    if not isinstance(cpus_shared, bool):
        raise SpecError(f"cpus_shared must be true or false, got {brief(cpus_shared)}", file, _line(raw, "cpus_shared"), node_id, "cpus_shared")
    if cpus_shared and cpus is None:
        raise SpecError("cpus_shared needs `cpus:` (the CPUs it would share)", file, _line(raw, "cpus_shared"), node_id, "cpus_shared")
    return cpus, cpus_shared


def _node_machine(raw: dict, node_id: str, file: str, machines: list[str]) -> str | None:
    machine = raw.get("machine")
    if machine is not None and not machines:
        raise SpecError("machine is set but the graph declares no `machines: [...]` list", file, _line(raw, "machine"), node_id, "machine")
    if machine is not None and machine not in machines:
        raise SpecError(f"unknown machine {brief(machine)}{did_you_mean(str(machine), machines)}; the graph's machines: {', '.join(machines)}",
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
            raise SpecError(f"{brief(item)} must look like ID.PARAM=VALUE", "--set")
        if node_id not in nodes:
            raise SpecError(f"{brief(item)}: no node '{node_id}'{did_you_mean(node_id, nodes)}", "--set")
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
        if inputs_raw and kind.is_source():
            raise SpecError(f"kind '{node.uses}' is a source and takes no inputs", file, _line(raw, "inputs"), node_id, "inputs")
        queue_raw = raw.get("queue") or {}
        for port, refs in inputs_raw.items():
            node.inputs[port] = InputSpec(port, _sources(spec, node, port, refs, file, _line(inputs_raw, port)))
        for port, q in queue_raw.items():
            _queue(node, port, q, file, _line(queue_raw, port))
        missing = [p for p in kind.INPUTS if p not in node.inputs and p not in kind.OPTIONAL_INPUTS]
        if missing:
            raise SpecError(f"input port '{missing[0]}' is wired to nothing (add inputs: {{{missing[0]}: producer/port}})", file, _line(raw, "inputs") or _line(raw), node_id, f"inputs.{missing[0]}")
        if kind.INPUTS and not node.inputs:  # every input optional, yet none wired: it would see nothing
            raise SpecError(f"no input is wired; kind '{node.uses}' takes: {', '.join(kind.INPUTS)}", file, _line(raw), node_id, "inputs")
    if nx.is_directed_acyclic_graph(graph):  # linear; find_cycle from every node would re-walk shared descendants
        _check_streams(spec, raw_by_id, file)
        _check_types(spec, raw_by_id, file)
        return
    on_cycles = set().union(*(c for c in nx.strongly_connected_components(graph) if len(c) > 1))
    cycle = nx.find_cycle(graph, source=next(n for n in spec.nodes if n in on_cycles))
    path = " -> ".join([e[0] for e in cycle] + [cycle[-1][1]])
    first = cycle[-1][1]
    raise SpecError(f"the graph has a cycle: {path}", file, _line(raw_by_id[first], "inputs"), first, "inputs")


def _check_types(spec: GraphSpec, raw_by_id: dict, file: str) -> None:
    """A warning (spec.warnings, and a line on the `posegraph.runner` log) for every input
    wired to an output whose declared type (Node.PORT_TYPES) it does not take. Not an
    error: types are optional and a kind may take more than it says."""
    given: dict[tuple[str, str], frozenset | None] = {}  # (producer, port) -> the types it gives; None: unknown
    for producer in nx.topological_sort(spec.graph):  # "in:PORT" outputs: what that input gets, known by now
        node = spec.nodes[producer]
        for port in node.kind.OUTPUTS:
            declared = node.kind.gives(port)
            if not isinstance(declared, str) or declared == "any":
                types = None
            elif declared.startswith("in:"):
                inp = node.inputs.get(declared[3:])
                parts = [given[source] for source in inp.sources] if inp else [None]
                types = None if any(t is None for t in parts) else frozenset().union(*parts)
            else:
                types = frozenset({declared})
            given[producer, port] = types

    log = logging.getLogger("posegraph.runner")
    for node_id, node in spec.nodes.items():
        inputs_raw = raw_by_id[node_id].get("inputs") or {}
        for port, inp in node.inputs.items():
            takes = node.kind.takes(port)
            if not takes or "any" in takes:
                continue
            for producer, producer_port in inp.sources:
                types = given[producer, producer_port]
                if not types or types <= set(takes):
                    continue
                head = file + (f":{line}" if (line := _line(inputs_raw, port)) is not None else "")
                text = one_line(f"{head}: node '{node_id}' input '{port}' takes {' or '.join(map(packet_type_text, takes))} "
                                f"but '{producer}/{producer_port}' gives {' or '.join(map(packet_type_text, sorted(types)))}")
                spec.warnings.append(text)
                log.warning(f"warning: {text}")


def _sources(spec: GraphSpec, node: NodeSpec, port, refs, file: str, line: int | None) -> list[tuple[str, str]]:
    """The (producer, producer port) pairs an input port is wired to, each checked; edges added."""
    node_id, kind = node.id, node.kind
    if port not in kind.INPUTS:
        known = ", ".join(kind.INPUTS) or "none"
        raise SpecError(f"kind '{node.uses}' has no input port '{port}'{did_you_mean(str(port), kind.INPUTS)}; inputs: {known}", file, line, node_id, f"inputs.{port}")
    if isinstance(refs, list) and not refs:
        raise SpecError("an empty list; give producer_id/output_port or a list of them (one per stream)", file, line, node_id, f"inputs.{port}")
    sources = []
    producers = set()
    for ref in refs if isinstance(refs, list) else [refs]:
        if not isinstance(ref, str) or ref.count("/") != 1 or not all(ref.split("/")):
            raise SpecError(f"{brief(ref)} must be producer_id/output_port (or a list of them)", file, line, node_id, f"inputs.{port}")
        producer, producer_port = ref.split("/")
        if producer not in spec.nodes:
            raise SpecError(f"wired to '{ref}' but there is no node '{producer}'{did_you_mean(producer, spec.nodes)}", file, line, node_id, f"inputs.{port}")
        pkind = spec.nodes[producer].kind
        if producer_port not in pkind.OUTPUTS:
            known = ", ".join(pkind.OUTPUTS) or "none"
            raise SpecError(f"node '{producer}' ({spec.nodes[producer].uses}) has no output port '{producer_port}'{did_you_mean(producer_port, pkind.OUTPUTS)}; outputs: {known}", file, line, node_id, f"inputs.{port}")
        if producer == node_id:
            raise SpecError("a node cannot take its own output as input (cycle)", file, line, node_id, f"inputs.{port}")
        if producer in producers:
            raise SpecError(f"'{producer}' is listed twice", file, line, node_id, f"inputs.{port}")
        producers.add(producer)
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
        raise SpecError(f"policy must be one of {', '.join(POLICIES)}, got {brief(policy)}", file, _line(q, "policy"), node_id, f"queue.{port}.policy")
    size = q.get("size", DEFAULT_QUEUE[policy])
    if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 1024:
        raise SpecError(f"size must be an integer in 1..1024, got {brief(size)}", file, _line(q, "size"), node_id, f"queue.{port}.size")
    node.inputs[port].policy, node.inputs[port].size = policy, size


def _check_streams(spec: GraphSpec, raw_by_id: dict, file: str) -> None:
    """A join fires per (stream, seq), so every input of a node must carry the same
    streams, and the producers merged on one port must carry different ones."""
    names = {sid: name for name, sid in spec.streams.items()}
    # node -> the streams reaching it as a bit mask (bit i: stream i), in one pass in
    # topological order: an ancestors walk per node, or a set per node, grows quadratically.
    masks: dict[str, int] = {}
    for node_id in nx.topological_sort(spec.graph):
        mask = 1 << spec.streams[node_id] if spec.nodes[node_id].is_source else 0
        for producer in spec.graph.predecessors(node_id):
            mask |= masks[producer]
        masks[node_id] = mask

    def ids(mask: int) -> list[int]:
        return [i for i in range(mask.bit_length()) if mask >> i & 1]

    for node_id, node in spec.nodes.items():
        inputs_raw = raw_by_id[node_id].get("inputs") or {}
        carried = {}
        for port, inp in node.inputs.items():
            seen = 0
            for k, (producer, _) in enumerate(inp.sources):
                both = seen & masks[producer]
                if both:
                    sid = ids(both & -both)[0]
                    first = next(p for p, _ in inp.sources[:k] if masks[p] >> sid & 1)
                    raise SpecError(f"'{first}' and '{producer}' both carry stream '{names[sid]}'; producers merged on one "
                                    "port must carry different streams", file, _line(inputs_raw, port), node_id, f"inputs.{port}")
                seen |= masks[producer]
            carried[port] = seen
        ports = list(carried)
        reaching = masks[node_id].bit_count()
        if node.kind.is_stateful() and node.replicas > reaching and not node.kind.is_source():
            raise SpecError(f"kind '{node.uses}' is stateful (its output depends on earlier frames of a stream), so its replicas "
                            f"are sharded by stream; {reaching} stream(s) reach it, so at most {reaching} replica(s) can work",
                            file, _line(raw_by_id[node_id], "replicas"), node_id, "replicas")
        for port in ports[1:]:
            if carried[port] != carried[ports[0]]:
                only = sorted(names[s] for s in ids(carried[port] ^ carried[ports[0]]))
                raise SpecError(f"inputs '{ports[0]}' and '{port}' carry different streams (only one has {', '.join(only)}); "
                                "every input of a node must carry the same streams, or its joins never complete",
                                file, _line(inputs_raw, port), node_id, f"inputs.{port}")
