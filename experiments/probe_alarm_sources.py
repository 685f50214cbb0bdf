"""Which alarms of a hidden-id run came from the dynamics, and which from a return drop?

    python experiments/probe_alarm_sources.py experiments/results/hidden-ids-dqn/hidden/runs/psp-binary-s*

Runs since 2026-12-04 record each detection's source in ``metrics.json`` (``TaskInference.detections``,
``false_alarms_by_source``). For older runs with dynamics evidence this reads it back from the run's
TensorBoard log: every scored window logs ``inference/dynamics_error`` (its error over the acting context's
usual one), and a dynamics alarm is ``surprises`` windows in a row beyond ``error_fit``. A detection with such
a run of windows ending at its step was raised by the dynamics; one without, by the return CUSUM. The floor
(``error_floor``) only removes surprises, so a logged run of ratios beyond ``error_fit`` is an upper bound: a
detection it does not explain is a return drop for certain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from psp_rl.plugins.inference.scoring import is_false_alarm
from psp_rl.plugins.inference.settings import InferenceConfig


def window_ratios(run: Path) -> dict[int, float]:
    """Each scored window's error over the usual one, by env step, from every event file of the run."""
    ratios = {}
    for events in sorted((run / "tb").glob("events*")):
        log = EventAccumulator(str(events), size_guidance={"scalars": 0})
        log.Reload()
        if "inference/dynamics_error" in log.Tags()["scalars"]:
            ratios.update({e.step: e.value for e in log.Scalars("inference/dynamics_error")})
    return ratios


def surprise_alarms(ratios: dict[int, float], error_fit: float, surprises: int) -> list[int]:
    """The steps where ``surprises`` windows in a row were beyond ``error_fit`` (floor left out)."""
    alarms, in_a_row = [], 0
    for step in sorted(ratios):
        in_a_row = in_a_row + 1 if ratios[step] > error_fit else 0
        if in_a_row >= surprises:
            alarms.append(step)
            in_a_row = 0
    return alarms


def sources(run: Path) -> list[tuple[int, bool, str]]:
    """Per detection: its step, whether it was a false alarm, and its source (recorded, or read back)."""
    metrics = json.loads((run / "metrics.json").read_text())
    inference = metrics["TaskInference"]
    saved = yaml.safe_load((run / "config.yaml").read_text()).get("inference", {})
    settings = InferenceConfig.model_validate(saved)  # the run's values, and the defaults of those it left out
    switches = [s["step"] for s in inference["switches"]]
    alarms = set(surprise_alarms(window_ratios(run), settings.error_fit, settings.surprises))
    out = []
    for detection in inference["detections"]:
        step = int(detection[0])
        source = detection[3] if len(detection) > 3 else "dynamics" if step in alarms else "returns"
        out.append((step, is_false_alarm(step, switches, settings.max_delay), source))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", help="finished hidden-id run dirs (dynamics evidence)")
    args = parser.parse_args(argv)
    for run in args.runs:
        found = sources(run)
        false = [source for _, is_false, source in found if is_false]
        counts = {name: false.count(name) for name in sorted(set(false))}
        print(f"{run}: {len(found)} detections, {len(false)} false alarms by source {counts}")
        for step, is_false, source in found:
            print(f"  {step:>8} {'false alarm' if is_false else 'switch     '} {source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
