"""An online run whose env runners sample nothing fails instead of reporting an untrained policy."""

from __future__ import annotations

import pytest

from rayrec.run.progress import SamplingWatch


def test_progress_keeps_the_run_going():
    watch = SamplingWatch(limit=3, seconds=10.0)
    for i in range(1, 50):
        watch.update(i, steps_lifetime=100 * i, now=60.0 * i)


def test_idle_iterations_and_time_both_needed():
    watch = SamplingWatch(limit=3, seconds=100.0)
    watch.update(1, 500, now=0.0)
    for i, now in ((2, 1.0), (3, 2.0), (4, 3.0), (5, 50.0)):  # 4 idle iterations, 50 s
        watch.update(i, 500, now=now)
    watch.update(6, 600, now=60.0)  # progress resets the count
    for i, now in ((7, 70.0), (8, 80.0)):
        watch.update(i, 600, now=now)
    with pytest.raises(RuntimeError, match=r"no env steps sampled in the last 3 iterations"):
        watch.update(9, 600, now=200.0)


def test_a_run_that_never_samples_fails():
    watch = SamplingWatch(limit=2, seconds=0.0)
    watch.update(1, 0, now=0.0)
    with pytest.raises(RuntimeError, match="every env runner keeps failing"):
        watch.update(2, 0, now=1.0)
