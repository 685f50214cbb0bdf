"""Run the learning tests at several seeds on every CPU float path of this machine and tabulate
what they measured, so each test's threshold carries a margin a different CPU cannot eat.

A CPU picks its own MKL / oneDNN / ATen kernels, so a run is bit-identical on one machine and not
across machines: a different CPU acts like a different seed. The environment variables below hold
this machine to the kernels an older CPU would use. Each (path, seed) runs the tests marked
``learning`` once (``pytest --learning-seed SEED``); the tests record what they measured with
``record_property``, which lands in a JUnit XML file read back here. Rows go to ``margins.csv``
(long format: path, seed, test, outcome, key, value); a (path, seed) already there is not rerun,
so the command resumes.

    python experiments/learning_margins.py --seeds 0 1 2 3 4 --out experiments/results/learning-margins
    python experiments/learning_margins.py tests/test_retention_fast.py --paths avx2 --seeds 3
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from psp_rl.continual.files import atomic_write_csv, atomic_write_text

FLOAT_PATHS = {
    "native": {},
    "avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "default": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
FIELDS = ["path", "seed", "test", "outcome", "key", "value"]


def run_pytest(tests: list[str], marker: str, path: str, seed: int, workers: str) -> list[dict]:
    """One pytest run of the learning tests on one float path at one seed: a row per recorded value
    (and one row with key ``-`` for a test that recorded none)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        command = [sys.executable, "-m", "pytest", *tests, "-m", marker, "-q", "-p", "no:cacheprovider"]
        command += ["-n", workers, f"--learning-seed={seed}", f"--junitxml={report}"]
        subprocess.run(command, env={**os.environ, **FLOAT_PATHS[path]}, capture_output=True, text=True)
        if not report.is_file():
            raise RuntimeError(f"pytest wrote no report for path={path} seed={seed}: {' '.join(command)}")
        return list(_rows(ET.parse(report).getroot(), path, seed))


def _rows(root: ET.Element, path: str, seed: int):
    for case in root.iter("testcase"):
        test = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        outcome = next((tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None), "passed")
        properties = [(p.get("name"), p.get("value")) for p in case.iter("property")] or [("-", "")]
        for key, value in properties:
            yield {"path": path, "seed": seed, "test": test, "outcome": outcome, "key": key, "value": value}


def read_rows(table: Path) -> list[dict]:
    if not table.is_file():
        return []
    with table.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(table: Path, rows: list[dict]) -> None:
    """Atomically: a killed run leaves the previous table whole."""
    atomic_write_csv(table, FIELDS, [[row[field] for field in FIELDS] for row in rows])


def summary(rows: list[dict]) -> str:
    """Per test and recorded value: min / max over every (path, seed), and the failing pairs."""
    values, failures, runs = defaultdict(list), defaultdict(set), defaultdict(set)
    for row in rows:
        pair = f"{row['path']}:{row['seed']}"
        runs[row["test"]].add(pair)
        if row["outcome"] in ("failure", "error"):
            failures[row["test"]].add(pair)
        if row["key"] != "-":
            values[row["test"], row["key"]].append(float(row["value"]))
    lines = []
    for test in sorted(runs):
        failed = sorted(failures[test])
        lines.append(f"{test}: {len(runs[test]) - len(failed)}/{len(runs[test])} passed" + (
            f", failed at {' '.join(failed)}" if failed else ""))  # fmt: skip
        for (name, key), measured in sorted(values.items()):
            if name == test:
                lines.append(f"    {key}: min {min(measured):.4g}, max {max(measured):.4g} (n={len(measured)})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="*", default=["tests"], help="pytest paths (default: tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--paths", nargs="+", choices=list(FLOAT_PATHS), default=list(FLOAT_PATHS))
    parser.add_argument("--marker", default="learning and not slow", help="pytest -m expression")
    parser.add_argument("--workers", default="2", help="pytest-xdist workers (-n)")
    parser.add_argument("--out", type=Path, default=Path("runs/learning-margins"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "margins.csv"
    rows = read_rows(table)
    done = {(r["path"], int(r["seed"])) for r in rows}
    for seed in args.seeds:  # every path of a seed before the next seed: a stopped table covers the paths alike
        for path in args.paths:
            if (path, seed) in done:
                continue
            rows += run_pytest(args.tests, args.marker, path, seed, args.workers)
            write_rows(table, rows)
            print(f"{path} seed {seed}: done", flush=True)
    text = summary(rows)
    header = f"# Learning tests over seeds and float paths\n\nMachine: {_machine()}\n\n```\n"
    atomic_write_text(args.out / "summary.md", header + text + "\n```\n")
    print(text)


def _machine() -> str:
    """CPU model, core count and torch version: what the float paths of this table ran on."""
    import platform

    import torch

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    model = names[0] if names else platform.processor() or "unknown CPU"
    native = "AMX/AVX512-BF16" if "amx_bf16" in cpuinfo else "AVX-512" if "avx512f" in cpuinfo else "AVX2 or older"
    return f"{model}, {os.cpu_count()} cores, native path {native}; torch {torch.__version__}"


if __name__ == "__main__":
    main()
