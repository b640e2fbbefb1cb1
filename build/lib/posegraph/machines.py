"""Where each machine of a graph is: the inventory, kept outside the graph file.

A graph names its machines (`machines: [edge, gpu]`) and places nodes on them; the
addresses come from `--hosts hosts.yaml` and `--host NAME=ADDR` at run time, so a DHCP
change or a move to another box never means editing (or re-committing) the graph.
"""
from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

import yaml

from .spec import GraphSpec, SpecError, load_yaml, read_graph_text


def load_inventory(spec: GraphSpec, hosts_file: str | None, host_flags: list[str]) -> dict[str, str]:
    """machine name -> address, from the hosts file then the --host flags (flags win)."""
    inventory: dict[str, str] = {}
    if hosts_file:
        try:  # the graph loader's rules: a regular file of a sane size, no aliases, no duplicate keys
            doc = load_yaml(read_graph_text(Path(hosts_file), hosts_file))
        except SpecError as exc:
            raise SpecError(exc.detail.replace("graph file", "hosts file"), hosts_file, exc.line) from None
        except yaml.YAMLError as exc:
            raise SpecError(f"cannot read the hosts file: {str(exc).splitlines()[0]}", hosts_file) from None
        if isinstance(doc, dict) and isinstance(doc.get("hosts"), dict):
            doc = doc["hosts"]  # `hosts: {edge: ...}` reads the same as the bare mapping
        if not isinstance(doc, dict):
            raise SpecError("a hosts file is a mapping of machine name: address (or {host: address})", hosts_file)
        for name, value in doc.items():
            if isinstance(value, dict):
                value = value.get("host")
            if not isinstance(value, str) or not value:
                raise SpecError(f"machine '{name}': address must be a host name or IP string, got {value!r}", hosts_file, field=str(name))
            inventory[str(name)] = value
    for flag in host_flags:
        name, eq, address = flag.partition("=")
        if not eq or not name or not address:
            raise SpecError(f"{flag!r} must look like NAME=ADDRESS", "--host")
        inventory[name] = address
    for name in inventory:
        if name not in spec.machines:
            known = ", ".join(spec.machines) or "none (the graph has no `machines:` list)"
            raise SpecError(f"machine '{name}' is not in the graph; its machines: {known}", hosts_file or "--host", field=name)
    return inventory


def check_placement(spec: GraphSpec, machine: str | None, inventory: dict[str, str]) -> None:
    """Everything a multi-machine run needs before any process starts, or one SpecError."""
    if machine is None:
        tcp = [n for n in spec.nodes.values() if n.transport == "tcp"]
        if tcp and not is_loopback(spec.host) and spec.security is None:
            raise SpecError(f"tcp nodes bind on {spec.host}, not a loopback address, and the graph has no `security:`; add "
                            "`security: {curve: KEYS_DIR}` or write `security: none`", spec.path, field="security")
        return
    if not spec.machines:
        raise SpecError("--machine was given but the graph declares no `machines: [...]`", spec.path, field="machines")
    if machine not in spec.machines:
        raise SpecError(f"--machine {machine!r} is not one of the graph's machines: {', '.join(spec.machines)}", spec.path, field="machines")
    for name in spec.machines:
        if name not in inventory:
            raise SpecError(f"machine '{name}' has no address: add `{name}: ADDRESS` to the --hosts file or pass --host {name}=ADDRESS",
                            "--hosts", field=name)
    if not any(n.machine == machine for n in spec.nodes.values()):
        raise SpecError(f"no node is placed on machine '{machine}'", spec.path, field="machine")
    security = spec.security or {"mode": None}
    if security["mode"] is None:
        public = [name for name in spec.machines if not is_loopback(inventory[name])]
        if public:
            raise SpecError(f"machine '{public[0]}' is at {inventory[public[0]]}, not a loopback address, and the graph has no "
                            "`security:`; add `security: {curve: KEYS_DIR}` (keys from `runner.py keys KEYS_DIR`) "
                            "or write `security: none` to accept unauthenticated plain-text links", spec.path, field="security")


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(address)).is_loopback
        except (OSError, ValueError):
            return False


def check_local_address(machine: str, address: str) -> None:
    """The address this machine's nodes bind must belong to this computer."""
    import socket as _socket

    try:
        family = _socket.AF_INET6 if ":" in address else _socket.AF_INET
        with _socket.socket(family, _socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        raise SpecError(f"machine '{machine}' is at {address}, which is not an address of this computer ({exc.strerror}); "
                        "is --machine right, or the --hosts entry?", "--machine", field=machine) from None
