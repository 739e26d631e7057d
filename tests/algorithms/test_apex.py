"""The Ape-X exploration ladder (Horgan et al. 2018, section 4)."""

from __future__ import annotations

import pytest

from rayrec.algorithms import ladder_epsilon


@pytest.mark.parametrize(
    "index, expected",
    [(0, 0.4), (1, 0.4 ** (1 + 7 / 3)), (2, 0.4 ** (1 + 14 / 3)), (3, 0.4**8)],
)
def test_ladder_matches_the_paper(index, expected):
    assert ladder_epsilon(index, 4, 0.4, 7.0) == pytest.approx(expected)


def test_ladder_decreases_and_single_actor_uses_epsilon():
    values = [ladder_epsilon(i, 8) for i in range(8)]
    assert values == sorted(values, reverse=True) and len(set(values)) == 8
    assert ladder_epsilon(0, 1, 0.3, 7.0) == 0.3


@pytest.mark.parametrize(
    "args, message",
    [((0, 4, 1.5, 7.0), "epsilon"), ((0, 4, 0.4, -1.0), "alpha"), ((4, 4, 0.4, 7.0), "index")],
)
def test_ladder_rejects_bad_values(args, message):
    with pytest.raises(ValueError, match=message):
        ladder_epsilon(*args)
