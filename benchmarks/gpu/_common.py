"""Shared by the hand-written variants: their own flags on top of the plain script's (benchmarks/gpu/gpt.py, cnn.py).

The hand-written scripts import model, data and flags from the plain script, so every variant trains exactly the
same model on the same data; only the distribution code differs.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def split_args(default_precision, choices):
    """(own flags, the plain script's flags): --precision and --devices here, the rest (--steps, --warmup,
    --batch-size, --smoke) for the plain script's parse_args."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--precision", default=default_precision, choices=choices)
    p.add_argument("--devices", type=int, default=None, help="Fabric only: processes to launch (default: all GPUs)")
    return p.parse_known_args()
