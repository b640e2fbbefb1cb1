"""`posegraph keys DIR [NAME ...]`: ZeroMQ CURVE key pairs for a graph's tcp links.

Writes DIR/public/NAME.key and DIR/private/NAME.key_secret (posegraph.security reads them)
and refuses to overwrite existing keys.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from posegraph.security import SHARED


def main(argv: list[str]) -> int:
    import zmq.auth

    parser = argparse.ArgumentParser(prog="runner.py keys", description="Create ZeroMQ CURVE key pairs for a graph's tcp links.")
    parser.add_argument("folder", help="where to write public/ and private/")
    parser.add_argument("names", nargs="*", default=[SHARED],
                        help=f"one key pair per name: machine names, or '{SHARED}' (default) for one pair shared by all machines")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    public_dir, private_dir = folder / "public", folder / "private"
    for name in args.names:
        if (private_dir / f"{name}.key_secret").exists() or (public_dir / f"{name}.key").exists():
            print(f"error: keys for '{name}' already exist in {folder}; delete them first to make new ones", file=sys.stderr)
            return 2
    public_dir.mkdir(parents=True, exist_ok=True)
    private_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(private_dir, 0o700)
    for name in args.names:
        public_file, secret_file = zmq.auth.create_certificates(str(private_dir), name)
        os.chmod(secret_file, 0o600)
        os.replace(public_file, public_dir / f"{name}.key")
        print(f"wrote {public_dir / (name + '.key')} and {secret_file}")
    print(f"use it with `security: {{curve: {folder}}}` in the graph (or --keys {folder}); "
          "copy public/ to every machine and each private key only where it is used")
    return 0
