"""`python -m posegraph ...`: the same command line as `posegraph` and `runner.py`."""
import os
import signal
import sys


def _stopped_while_starting(signum, frame):
    """Ctrl-C / SIGTERM while Python still imports the engine: nothing was made yet, so
    one line and exit code 0 instead of a KeyboardInterrupt traceback (posegraph.cli
    takes the signals over, or gives them back, as soon as it runs)."""
    sys.stderr.write(f"stopped ({signal.Signals(signum).name}) while starting\n")
    sys.stderr.flush()
    os._exit(0)


_stopped_while_starting.posegraph_starting = True
for _sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(_sig, _stopped_while_starting)

from .cli import main  # noqa: E402 (after the handler, which must come first)

sys.exit(main(prog="python -m posegraph"))
