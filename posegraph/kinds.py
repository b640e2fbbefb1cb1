"""Resolve a graph's `uses:` to a node class: an installed kind's name or `path/to/file.py:Class`."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from . import registry
from .hints import did_you_mean
from .node import Node


class KindError(Exception):
    """The `uses:` value names no usable node class."""


def builtin_kinds() -> dict[str, str]:
    """Installed kinds: name -> "module:Class" (see posegraph.registry)."""
    try:
        return registry.kinds()
    except registry.NotInstalled as exc:
        raise KindError(str(exc)) from None


def _load_file_class(ref: str, base_dir: Path) -> type:
    path_text, _, class_name = ref.rpartition(":")
    path = Path(path_text)
    if not path.is_absolute():
        path = (base_dir / path).resolve()
    if not path.is_file():
        raise KindError(f"node file {path_text!r} not found (looked at {path})")
    module_name = f"posegraph_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a user's file with an error in it
            del sys.modules[module_name]
            raise KindError(f"importing {path_text!r} failed: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Node) and v is not Node]
        raise KindError(f"{path_text!r} has no class {class_name!r}{did_you_mean(class_name, names)}")
    return cls


def resolve_kind(uses: str, base_dir: Path) -> type:
    """Return the Node subclass that `uses` names, or raise KindError saying why not."""
    if not isinstance(uses, str) or not uses:
        raise KindError("must be a kind name or path/to/file.py:ClassName")
    if ".py:" in uses:
        cls = _load_file_class(uses, base_dir)
    else:
        kinds = builtin_kinds()
        if uses not in kinds:
            raise KindError(f"unknown kind {uses!r}{did_you_mean(uses, kinds)}; built-in kinds: {', '.join(sorted(kinds))}")
        cls = registry.load(kinds[uses])
    if not (isinstance(cls, type) and issubclass(cls, Node)):
        raise KindError(f"{uses!r} is not a posegraph.Node subclass")
    return cls
