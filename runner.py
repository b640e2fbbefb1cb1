#!/usr/bin/env python3
"""Run, check or draw a PoseGraph graph: see `python runner.py --help`."""
import sys

from posegraph.cli import main

if __name__ == "__main__":
    sys.exit(main())
