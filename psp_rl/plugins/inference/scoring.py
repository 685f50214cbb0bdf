"""Scoring task inference against the true schedule (which the inference itself never reads):
detection delays, false alarms, and the context each returning task got."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np


def score_inference(
    switches: Sequence[dict[str, Any]],
    detections: Sequence[int],
    stage_contexts: Sequence[Sequence[int]],
    schedule: Sequence[int],
    total_steps: int,
    max_delay: int,
    sources: Sequence[str] = (),
) -> dict[str, Any]:
    """Detection rate and delay over the noticeable switches, false alarms, and the contexts of
    the returning tasks (:func:`returning_tasks`).

    A detection within ``max_delay`` steps after any switch is that switch's; every other
    detection is a false alarm. ``sources`` (one per detection: what raised it) splits the false
    alarms by source.
    """
    starts = [s["step"] for s in switches]
    delays = []
    for switch in switches:
        hit = next((d for d in detections if 0 <= d - switch["step"] <= max_delay), None)
        switch["delay"] = None if hit is None else hit - switch["step"]
        if switch.get("noticeable"):
            delays.append(switch["delay"])
    false = [i for i, d in enumerate(detections) if is_false_alarm(d, starts, max_delay)]
    returning = returning_tasks(stage_contexts, schedule)
    found = [d for d in delays if d is not None]
    return {
        "switches": list(switches),
        "noticeable_switches": len(delays),
        "detected_within_max_delay": len(found),
        "detection_rate": len(found) / len(delays) if delays else None,
        "mean_delay": float(np.mean(found)) if found else None,
        "false_alarms": len(false),
        "false_alarms_per_100k_steps": 1e5 * len(false) / max(total_steps, 1),
        **({"false_alarms_by_source": dict(Counter(sources[i] for i in false))} if sources else {}),
        "stage_contexts": [list(row) for row in stage_contexts],
        "returning_tasks": returning,
        "returning_mapped_to_own_context": (
            sum(r["context"] == r["own_context"] for r in returning) / len(returning) if returning else None
        ),
        "returning_reused_a_stored_context": (
            sum(r["reused"] for r in returning) / len(returning) if returning else None
        ),
    }


def is_false_alarm(detection: int, switch_steps: Sequence[int], max_delay: int) -> bool:
    """A detection at env step ``detection`` is no switch's: none began within ``max_delay`` steps before it."""
    return not any(0 <= detection - s <= max_delay for s in switch_steps)


def returning_tasks(stage_contexts: Sequence[Sequence[int]], schedule: Sequence[int]) -> list[dict[str, Any]]:
    """For each stage whose task was trained before: the context that acted most in it, the one
    that acted most in the task's first stage (``own_context``), and whether it was a stored
    context (``reused``: it had acted most in an earlier stage) rather than one taken afresh."""
    acting = [int(np.argmax(row)) for row in stage_contexts]
    own: dict[int, int] = {}
    out = []
    for stage, context in enumerate(acting):
        task = schedule[stage]
        if task in own:
            reused = context in acting[:stage]
            out.append({"stage": stage, "task": task, "context": context, "own_context": own[task], "reused": reused})
        else:
            own[task] = context
    return out
