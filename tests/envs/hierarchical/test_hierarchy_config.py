"""HierarchyConfig: defaults, validation messages that name the field, dict round trip."""

from __future__ import annotations

from typing import Any

import pytest

from rayrec.envs.hierarchical import OPTION_KINDS, HierarchyConfig


def test_defaults_offer_every_option_kind() -> None:
    config = HierarchyConfig()
    assert config.options == OPTION_KINDS
    assert HierarchyConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("values", "field"),
    [
        pytest.param({"options": ()}, "options", id="no-options"),
        pytest.param({"options": ("explore", "wander")}, "options", id="unknown-kind"),
        pytest.param({"options": ("explore", "explore")}, "options", id="repeat"),
        pytest.param({"option_budget": 0}, "option_budget", id="budget-0"),
        pytest.param({"option_budget": 2.5}, "option_budget", id="budget-float"),
        pytest.param({"skip_streak": -1}, "skip_streak", id="streak-negative"),
        pytest.param({"following_weight": -0.1}, "following_weight", id="weight-negative"),
        pytest.param({"return_weight": float("nan")}, "return_weight", id="return-nan"),
        pytest.param({"on_unavailable": "ignore"}, "on_unavailable", id="on-unavailable"),
        pytest.param(
            {"terminate_outside_initiation": 1}, "terminate_outside_initiation", id="flag-int"
        ),
    ],
)
def test_invalid_values_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HierarchyConfig(**values)


def test_unknown_keys_are_named() -> None:
    with pytest.raises(ValueError, match=r"unknown hierarchy field.*budget"):
        HierarchyConfig.from_dict({"budget": 3})


def test_options_list_from_yaml_becomes_a_tuple() -> None:
    config = HierarchyConfig.from_dict({"options": ["explore", "topic"]})
    assert config.options == ("explore", "topic")
