"""SimConfig: defaults, derived values, round trips and validation of bad values."""

from __future__ import annotations

import dataclasses
import math
import re

import gymnasium as gym
import pytest

import rayrec  # noqa: F401  (registers rayrec/Session-v0)
from rayrec.sim import SimConfig

# (case id, keyword arguments, the field the error message must start with)
BAD_CONFIGS = [
    ("zero_items", {"num_items": 0}, "num_items"),
    ("negative_candidates", {"num_candidates": -1}, "num_candidates"),
    ("zero_slate", {"slate_size": 0}, "slate_size"),
    ("slate_over_candidates", {"num_candidates": 10, "slate_size": 12}, "slate_size"),
    ("candidates_over_items", {"num_items": 40, "num_candidates": 50}, "num_candidates"),
    ("topics_over_items", {"num_items": 40, "num_candidates": 10, "num_topics": 41}, "num_topics"),
    ("nan_spread", {"topic_spread": math.nan}, "topic_spread"),
    ("inf_budget", {"session_budget": math.inf}, "session_budget"),
    ("fraction_above_one", {"clickbait_fraction": 1.5}, "clickbait_fraction"),
    ("negative_rate", {"drift_rate": -0.1}, "drift_rate"),
    ("open_bound_zero", {"gap_mean_days": 0.0}, "gap_mean_days"),
    ("string_for_int", {"num_items": "5000"}, "num_items"),
    ("bool_for_int", {"max_sessions": True}, "max_sessions"),
    ("float_for_int", {"history_len": 10.0}, "history_len"),
    ("none_for_float", {"observation_noise": None}, "observation_noise"),
    ("bool_for_float", {"drift_rate": False}, "drift_rate"),
    ("unknown_choice_model", {"choice_model": "softmax"}, "choice_model"),
    ("unknown_catalog", {"catalog": "ml-1m"}, "catalog"),
    ("items_not_the_datasets", {"catalog": "ml-100k"}, "num_items"),
    ("negative_activity_exponent", {"activity_exponent": -1.0}, "activity_exponent"),
    (
        "fractions_sum_over_one",
        {"personal_fraction": 0.9, "popular_fraction": 0.2},
        "personal_fraction",
    ),
    ("sponsored_without_advertisers", {"num_advertisers": 0}, "sponsored_fraction"),
    ("negative_world_seed", {"world_seed": -1}, "world_seed"),
]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [pytest.param(kwargs, field, id=case) for case, kwargs, field in BAD_CONFIGS],
)
def test_bad_config_raises_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}\b"):
        SimConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [pytest.param(kwargs, field, id=case) for case, kwargs, field in BAD_CONFIGS],
)
def test_bad_config_raises_through_from_dict(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}\b"):
        SimConfig.from_dict(kwargs)


def test_from_dict_names_an_unknown_field_and_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown simulator field\(s\) num_item;.*num_items"):
        SimConfig.from_dict({"num_item": 100})


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        pytest.param({"clickbait": 0.2}, r"unknown simulator field\(s\) clickbait", id="unknown"),
        pytest.param({"slate_size": 0}, r"^slate_size\b", id="zero_slate"),
        pytest.param({"choice_model": "probit"}, r"^choice_model\b", id="unknown_choice_model"),
    ],
)
def test_gymnasium_make_rejects_bad_kwargs(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        gym.make("rayrec/Session-v0", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        pytest.param({"clickbait": 0.2}, r"unknown simulator field\(s\) clickbait", id="unknown"),
        pytest.param({"num_candidates": 0}, r"^num_candidates\b", id="zero_candidates"),
    ],
)
def test_gymnasium_make_vec_rejects_bad_kwargs(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        gym.make_vec(
            "rayrec/Session-v0", num_envs=2, vectorization_mode="vector_entry_point", **kwargs
        )


def test_round_trip_through_dict() -> None:
    config = SimConfig(num_items=300, slate_size=3, choice_model="cascade")
    assert SimConfig.from_dict(config.to_dict()) == config


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        SimConfig().num_items = 10  # type: ignore[misc]


@pytest.mark.parametrize(
    ("pool_factor", "num_candidates", "pool_size"),
    [(2.0, 20, 40), (1.0, 7, 7), (1.5, 7, 11)],
)
def test_pool_size_is_derived(pool_factor: float, num_candidates: int, pool_size: int) -> None:
    config = SimConfig(pool_factor=pool_factor, num_candidates=num_candidates)
    assert config.pool_size == pool_size


def test_int_is_accepted_for_a_float_field() -> None:
    assert SimConfig(topic_spread=1).topic_spread == 1
