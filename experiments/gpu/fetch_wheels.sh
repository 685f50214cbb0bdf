#!/usr/bin/env bash
# Run HERE (the CPU machine, repo root) before a session's device call: the py3.12 wheels the device image
# lacks, plus a wheel of the project, into .whl/ (git-ignored through .git/info/exclude; ~6 MB). The versions
# are the ones this machine's tests pass with; the image already has torch, numpy, pandas, matplotlib, rich,
# pyyaml, tensorboard, opencv and cloudpickle.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python -m pip wheel -q --no-deps --no-build-isolation -w .whl .
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$p")
done
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 stable-baselines3==2.9.2 minatar==1.0.15 \
  pydantic==2.13.4 pydantic-core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 typing-extensions==4.15.0
ls -1 .whl
du -sh .whl
