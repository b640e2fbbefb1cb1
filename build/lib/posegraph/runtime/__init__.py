"""The node runtime: everything between the sockets and a node kind's `process`.

    process.py   the shell: set-up, the source and consumer loops, the control channel
    inputs.py    receive, check, reorder, dedupe, SYNC, queues and drops, the join
    outputs.py   links to consumers, credit per (link, stream), resending, EOS
    slots.py     shared-memory slots: allocation, forwarding, encoding for a link
    links.py     the two ends of a link, and a received packet
    sockets.py   sockets with the graph's security; peers on other machines watched
    marks.py     per-stream progress that survives a restart
"""
from .links import LATEST_SLACK
from .process import NodeProcess, StopNow, install_signal_handlers

__all__ = ["LATEST_SLACK", "NodeProcess", "StopNow", "install_signal_handlers"]
