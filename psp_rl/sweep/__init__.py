"""Sweeps: many runs (methods x seeds) as Ray trials, resumable, and the finished trials read back."""
