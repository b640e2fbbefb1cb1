"""What is installed beside the engine: node kinds and commands, found by entry point.

The engine never imports the application. Packages declare their kinds under the
`posegraph.kinds` entry-point group (name -> "module:Class") and their commands under
`posegraph.commands` (name -> "module:main"); PoseGraph's own built-in kinds and commands
are declared that way in setup.cfg, and so can a user's package.
"""
from __future__ import annotations

import functools
from importlib import metadata

KINDS_GROUP = "posegraph.kinds"
COMMANDS_GROUP = "posegraph.commands"


class NotInstalled(LookupError):
    """No kind or command is registered: the project is not installed."""


@functools.cache
def _group(group: str) -> dict[str, str]:
    """name -> "module:attribute" of every entry point in `group`."""
    found = {ep.name: ep.value for ep in metadata.entry_points(group=group)}
    if not found:
        raise NotInstalled(f"no {group} entry points: PoseGraph is not installed in this Python "
                           "(run `make setup`, or `pip install -e .` in the repository)")
    return found


def kinds() -> dict[str, str]:
    """Node kind name -> "module:Class"."""
    return _group(KINDS_GROUP)


def commands() -> dict[str, str]:
    """Command name -> "module:function"."""
    return _group(COMMANDS_GROUP)


def load(reference: str):
    """The object a "module:attribute" reference names (imports the module)."""
    import importlib

    module_name, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
