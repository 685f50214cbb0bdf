"""The ``psp-rl`` command."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="psp-rl", description="Continual RL with Parameter Superposition.")
    parser.parse_args(argv)
    parser.print_help()
    return 0
