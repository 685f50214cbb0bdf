"""Callbacks that plug into the continual loop: online EWC (a baseline), retention probes, and task
inference under hidden task ids (:mod:`psp_rl.plugins.inference`)."""
