"""Command line: ``parity run`` (the main job) and ``parity check MODEL``."""

import argparse
import subprocess
import sys


def _run(args):
    # Until the model-level suite lands, the main job is the layer-by-layer parity tests.
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "tests/scratch"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="parity", description="Keras vs scratch NumPy parity checks.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run every parity check and write reports/").set_defaults(func=_run)
    args = parser.parse_args(argv)
    return args.func(args)
