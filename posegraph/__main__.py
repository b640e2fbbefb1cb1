"""`python -m posegraph ...`: the same command line as `posegraph` and `runner.py`."""
import sys

from .cli import main

sys.exit(main(prog="posegraph"))
