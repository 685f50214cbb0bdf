"""Installed the way users install it: a wheel built from the project, in a fresh venv, run from
outside the repository, finds its shipped configs by name."""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["sequence.steps=256", "eval.every=256", "eval.episodes=1", "checkpoint.every=256"]


def _run(*command, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # the venv's psp_rl, not a tree's
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding the project's wheel (its dependencies come from this interpreter's site-packages,
    so the test needs no network): the venv's bin directory."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy without build leftovers, so the wheel holds what a clean clone builds
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "results"))
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", tmp, source, cwd=tmp)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp.glob("psp_rl-*.whl")
    venv.create(tmp / "venv", system_site_packages=True, with_pip=False)
    bin_dir = tmp / "venv" / "bin"
    pip = _run(bin_dir / "python", "-m", "pip", "install", "--no-deps", "--no-index", wheel, cwd=tmp)
    assert pip.returncode == 0, pip.stderr
    return bin_dir


def test_the_wheel_runs_a_shipped_config_by_name_outside_the_repository(installed, tmp_path):
    where = _run(installed / "python", "-c", "import psp_rl; print(psp_rl.__file__)", cwd=tmp_path)
    assert str(installed.parent) in where.stdout, where.stdout  # the wheel's copy, not the checkout's
    version = _run(installed / "psp-rl", "--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("psp-rl 0."), version.stdout
    listed = _run(installed / "python", "-m", "psp_rl", "list", cwd=tmp_path)
    assert listed.returncode == 0 and "quickstart " in listed.stdout, listed.stderr
    train = _run(installed / "psp-rl", "train", "quickstart", "--set", *TINY, "--no-progress", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert "final average return" in train.stdout and (tmp_path / "runs" / "quickstart" / "metrics.json").is_file()
    assert "A.L.E" not in train.stderr + train.stdout
