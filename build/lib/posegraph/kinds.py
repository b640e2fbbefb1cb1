"""Resolve a graph's `uses:` to a node class: an installed kind's name or `path/to/file.py:Class`.

A `file.py:Class` reference runs that file (an import), so locating a file (`node_file`)
is kept apart from importing it: the graph check can refuse a reference before any of
its code runs.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from pathlib import Path

from . import registry
from .hints import did_you_mean
from .node import Node, Param, brief

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # a declared port or param name (fullmatch)


class KindError(Exception):
    """The `uses:` value names no usable node class."""


def builtin_kinds() -> dict[str, str]:
    """Installed kinds: name -> "module:Class" (see posegraph.registry)."""
    try:
        return registry.kinds()
    except registry.NotInstalled as exc:
        raise KindError(str(exc)) from None


def is_file_reference(uses: str) -> bool:
    return ".py:" in uses


def node_file(uses: str, base_dir: Path) -> tuple[Path, str]:
    """(resolved path, class name) of a `path/to/file.py:Class` reference, relative to
    base_dir unless absolute; KindError when there is no such file. Runs nothing."""
    path_text, _, class_name = uses.rpartition(":")
    try:
        path = (Path(base_dir) / path_text).resolve()  # an absolute path_text replaces base_dir
        found = path.is_file()
    except (OSError, ValueError) as exc:
        raise KindError(f"node file {path_text!r} cannot be read: {exc}") from None
    if not found:
        raise KindError(f"node file {path_text!r} not found (looked at {path})")
    return path, class_name


def _load_file_class(uses: str, base_dir: Path) -> type:
    path, class_name = node_file(uses, base_dir)
    path_text = uses.rpartition(":")[0]
    # One module per resolved path: the same file named twice (or by two spellings) is imported once.
    module_name = f"posegraph_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:  # noqa: BLE001 - SystemExit or KeyboardInterrupt at import is the file's fault too
            del sys.modules[module_name]
            try:
                text = str(exc)[:200]
            except Exception:  # noqa: BLE001 - an exception whose __str__ fails too
                text = ""
            raise KindError(f"importing {path_text!r} failed: {type(exc).__name__}" + (f": {text}" if text else "")) from None
    try:
        cls = getattr(module, class_name, None)
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Node) and v is not Node]
    except BaseException as exc:  # noqa: BLE001 - a module __getattr__ of the user's
        raise KindError(f"reading class {class_name!r} of {path_text!r} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if cls is None:
        raise KindError(f"{path_text!r} has no class {class_name!r}{did_you_mean(class_name, names)}")
    return cls


def check_declarations(cls: type) -> None:
    """The class attributes a kind declares (ports, params, keys) have the shapes the engine
    reads, and it implements `process`; else KindError naming the class and the attribute,
    so a kind's mistake is one line at check time, not a traceback in a node process."""
    label = f"class {cls.__name__}"
    for attr in ("INPUTS", "OUTPUTS"):
        ports = getattr(cls, attr)
        if not isinstance(ports, dict):
            raise KindError(f"{label}: {attr} must be a dict {{port: description}}, got {type(ports).__name__} {brief(ports)}")
        for port in ports:
            if not isinstance(port, str) or not NAME.fullmatch(port):
                raise KindError(f"{label}: {attr} port {brief(port)} must be a name of letters, digits, '_' or '-'")
    if not isinstance(cls.PARAMS, dict):
        raise KindError(f"{label}: PARAMS must be a dict {{name: Param(...)}}, got {type(cls.PARAMS).__name__} {brief(cls.PARAMS)}")
    for name, decl in cls.PARAMS.items():
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise KindError(f"{label}: param {brief(name)} must be a name of letters, digits, '_' or '-'")
        if not isinstance(decl, Param):
            raise KindError(f"{label}: param {name!r} must be declared as Param(default, ...), got {type(decl).__name__} {brief(decl)}")
    optional = cls.OPTIONAL_INPUTS
    if not isinstance(optional, (set, frozenset, tuple, list)) or any(not isinstance(p, str) or p not in cls.INPUTS for p in optional):
        raise KindError(f"{label}: OPTIONAL_INPUTS must be a set of its INPUTS ports, got {brief(optional)}")
    if not isinstance(cls.STATEFUL, bool):
        raise KindError(f"{label}: STATEFUL must be True or False, got {brief(cls.STATEFUL)}")
    if cls.KEYS is not None and not (callable(getattr(cls.KEYS, "split", None)) and callable(getattr(cls.KEYS, "merge", None))):
        raise KindError(f"{label}: KEYS must be None or a posegraph.Keys (split and merge), got {brief(cls.KEYS)}")
    if not isinstance(cls.KEY_TIMEOUT, int) or isinstance(cls.KEY_TIMEOUT, bool) or cls.KEY_TIMEOUT < 1:
        raise KindError(f"{label}: KEY_TIMEOUT must be a whole number of frames, 1 or more, got {brief(cls.KEY_TIMEOUT)}")
    _check_port_types(cls, label)
    if getattr(cls, "process", None) is Node.process or not callable(getattr(cls, "process", None)):
        raise KindError(f"{label} does not implement process(self, inputs, ctx)")


def _check_port_types(cls: type, label: str) -> None:
    """PORT_TYPES: {"in:PORT": type or (type, ...), "out:PORT": type or "in:PORT"}, for
    declared ports, each type a name (posegraph.node.PACKET_TYPES, or one of the kind's)."""
    types = cls.PORT_TYPES
    shape = '{"in:PORT": type or (type, ...), "out:PORT": type}'
    if not isinstance(types, dict):
        raise KindError(f"{label}: PORT_TYPES must be a dict {shape}, got {type(types).__name__} {brief(types)}")
    for key, value in types.items():
        side, _, port = key.partition(":") if isinstance(key, str) else ("", "", "")
        ports = cls.INPUTS if side == "in" else cls.OUTPUTS if side == "out" else None
        if ports is None or port not in ports:
            raise KindError(f"{label}: PORT_TYPES key {brief(key)} must be 'in:PORT' or 'out:PORT' for one of its "
                            f"{'INPUTS' if side == 'in' else 'OUTPUTS' if side == 'out' else 'ports'}")
        if side == "out" and isinstance(value, str) and value.startswith("in:"):
            if value[3:] not in cls.INPUTS:
                raise KindError(f"{label}: PORT_TYPES[{key!r}] = {brief(value)} names no input of the kind")
            continue
        names = [value] if isinstance(value, str) or side == "out" else list(value) \
            if isinstance(value, (tuple, list, set, frozenset)) and value else [None]
        for name in names:
            if not isinstance(name, str) or not NAME.fullmatch(name):
                raise KindError(f"{label}: PORT_TYPES[{key!r}] must be "
                                + ("a type name or 'in:PORT'" if side == "out" else "a type name or a tuple of them")
                                + f", got {brief(value)}")


def resolve_kind(uses: str, base_dir: Path) -> type:
    """Return the Node subclass that `uses` names, or raise KindError saying why not."""
    if not isinstance(uses, str) or not uses:
        raise KindError("must be a kind name or path/to/file.py:ClassName")
    if is_file_reference(uses):
        cls = _load_file_class(uses, base_dir)
    else:
        kinds = builtin_kinds()
        if uses not in kinds:
            raise KindError(f"unknown kind {uses!r}{did_you_mean(uses, kinds)}; built-in kinds: {', '.join(sorted(kinds))}")
        try:
            cls = registry.load(kinds[uses])
        except Exception as exc:  # noqa: BLE001 - an installed kind whose module cannot import (a missing dependency)
            raise KindError(f"kind {uses!r} cannot be loaded: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise KindError(f"{uses!r} is not a posegraph.Node subclass")
    check_declarations(cls)
    return cls
