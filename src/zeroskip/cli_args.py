"""Argument names and argparse types of the `zeroskip` command: comma lists checked against the
allowed names, numbers in a range; a bad value is an argparse error naming the argument (exit 2).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

DTYPE_NAMES = ("fp32", "tf32", "fp16", "bf16")
OP_NAMES = ("conv2d", "conv2d_pool")
SWEEP_DEFAULT = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,0.99"
SWEEP_LAYERS = {"vgg16": "conv2_2,conv3_1,conv4_1,conv5_2", "vgg19": "features.5,features.12,features.21,features.30"}
OUT_DEFAULT = "zeroskip-results"
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")  # torch.compile modes the baselines use


def _choices(what, allowed):
    """argparse type: a comma list whose items must be in `allowed`."""
    def parse(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        bad = [t for t in items if t not in allowed]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(map(repr, bad)) or repr(text)} "
                                             f"(choose from {', '.join(allowed)})")
        return items
    return parse


def _one(what, allowed):
    """argparse type: one name that must be in `allowed`."""
    def parse(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {text!r} (choose from {', '.join(allowed)})")
        return text
    return parse


def _numbers(conv, low, high):
    """argparse type: a comma list of numbers (conv: int or float) in [low, high]; argparse names
    the argument in the message."""
    kind = "integers" if conv is int else "numbers"

    def parse(text):
        try:
            items = [conv(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a comma list of {kind}, got {text!r}") from None
        if not items or any(not low <= v <= high for v in items):
            raise argparse.ArgumentTypeError(f"must be in [{low}, {high}], got {text!r}")
        return items
    return parse


def _int(low, high):
    """argparse type: one integer in [low, high]."""
    parse = _numbers(int, low, high)

    def one(text):
        items = parse(text)
        if len(items) != 1:
            raise argparse.ArgumentTypeError(f"takes one integer, got {text!r}")
        return items[0]
    return one


def _out_dir(text):
    """argparse type: a folder that exists or can be made (not a file, under a writable folder)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"cannot make folder {text!r}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write into {text!r}: {existing} is not writable")
    return path


def _flat(values, default):
    return [v for group in values for v in group] if values else list(default)
