"""Test tiers: tests without a tier marker are unit tests (no Ray, fast)."""

from __future__ import annotations

import pytest

_TIERS = ("integration", "learning", "gpu")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in _TIERS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance shared by every integration and learning test of the session."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
