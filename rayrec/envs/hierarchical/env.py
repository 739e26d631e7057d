"""``HierarchicalSessionEnv``: one user's lifetime as an RLlib ``MultiAgentEnv`` with two levels.

The high level (agent ``"high"``) picks an option when none is active; the low level (agent
``"low"``) picks items every simulator step with the active option in its observation. This is
RLlib's standard arrangement for hierarchies (``examples/envs/classes/six_room_env.py``): a
high-level step does not advance the simulator, it hands control to the low level, which acts until
the option terminates and control returns to the high level. Rewards of an agent that does not
observe at a step are summed by RLlib's ``MultiAgentEpisode`` until its next observation.

Reward decomposition (exact; ``docs/hierarchical.md``), per simulator step t with engagement r_t
(the flat ``SessionEnv`` reward), following term f_t and long-term term l_t:

    low reward at t          = r_t + w * f_t
    high reward of option k  = sum_{t in k} (r_t + l_t)      (given at the step that ends k)

so for any trajectory sum(low) - w * sum(f) = sum(high) - sum(l) = the flat return.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rayrec.envs.hierarchical.config import HIGH, LOW, HierarchyConfig, HierInfo, HierObs
from rayrec.envs.hierarchical.observation import HIGH_KEYS, high_observation, low_observation
from rayrec.envs.hierarchical.options import (
    Option,
    build_options,
    following,
    initiation_mask,
    termination,
)
from rayrec.envs.observation import Obs, action_space, observation_space, observe
from rayrec.envs.session import _first_seed, _seed_simulator
from rayrec.sim import SessionSimulator, SimConfig, StepResult

__all__ = ["HierarchicalSessionEnv"]


class HierarchicalSessionEnv(MultiAgentEnv):
    """One user's lifetime of sessions, recommended to by a high and a low level.

    Args:
        config: RLlib's ``env_config``: fields of :class:`rayrec.sim.SimConfig`, plus optional
            ``hierarchy`` (a :class:`HierarchyConfig` or its dict) and ``seed`` (used when
            ``reset`` is called without one the first time).
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        values = dict(config or {})
        hierarchy = values.pop("hierarchy", None) or {}
        seed = values.pop("seed", None)
        self.hierarchy = (
            hierarchy
            if isinstance(hierarchy, HierarchyConfig)
            else HierarchyConfig.from_dict(dict(hierarchy))
        )
        self.config = SimConfig.from_dict(values)
        self.sim = SessionSimulator(self.config, 1, seed=seed)
        self._default_seed = seed
        self._has_reset = False
        self.options: tuple[Option, ...] = build_options(self.hierarchy, self.config.num_topics)
        k, t = len(self.options), self.config.num_topics

        self.agents = self.possible_agents = [HIGH, LOW]
        session = observation_space(self.config)
        f32 = np.float32
        high = {key: session[key] for key in HIGH_KEYS}
        high[HierObs.TOPIC_SHOWN] = spaces.Box(0.0, 1.0, (t,), f32)
        high[HierObs.TOPIC_CLICK_RATE] = spaces.Box(0.0, 1.0, (t,), f32)
        high[Obs.ACTION_MASK] = spaces.Box(0, 1, (k,), np.int8)
        low = dict(session.spaces)
        low[HierObs.OPTION] = spaces.Box(0.0, 1.0, (k,), f32)
        low[HierObs.OPTION_REMAINING] = spaces.Box(0.0, 1.0, (1,), f32)
        self.observation_spaces = {HIGH: spaces.Dict(high), LOW: spaces.Dict(low)}
        self.action_spaces = {HIGH: spaces.Discrete(k), LOW: action_space(self.config)}
        self._clear()

    # ---- episode state -------------------------------------------------------------------------
    def _clear(self) -> None:
        t = self.config.num_topics
        self.option: int | None = None
        """Index of the active option, None when the high level is to act."""
        self.option_steps = 0
        self._skip_run = 0
        self._option_topics: set[int] = set()
        self._high_acc = 0.0
        self._topic_shown = np.zeros(t, dtype=np.float64)
        self._topic_clicks = np.zeros(t, dtype=np.float64)
        self._history: tuple[np.ndarray, np.ndarray] | None = None
        self.last_result: StepResult | None = None
        """The simulator's result of the last low step (None before the first): what evaluation
        reads for clicks, watch and coverage."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        seed = _first_seed(self, seed)
        super().reset(seed=seed, options=options)
        _seed_simulator(self, seed)
        self.sim.reset()
        self._clear()
        return {HIGH: self._high_obs()}, {HIGH: self._info()}

    # ---- the step ------------------------------------------------------------------------------
    def step(
        self, action_dict: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, float], dict[str, bool], dict[str, bool], dict[str, Any]]:
        if self.option is None:
            if HIGH not in action_dict:
                raise ValueError(f"no option is active: the action dict needs {HIGH!r}")
            return self._start_option(int(action_dict[HIGH]))
        if LOW not in action_dict:
            raise ValueError(f"an option is active: the action dict needs {LOW!r}")
        return self._low_step(action_dict[LOW])

    def _start_option(self, choice: int) -> tuple[Any, ...]:
        mask = self.initiation_mask()
        if not 0 <= choice < len(self.options):
            raise ValueError(f"option ({choice}) must be in [0, {len(self.options)})")
        rejected = not mask[choice]
        if rejected:
            if self.hierarchy.on_unavailable == "raise":
                available = ", ".join(self.options[i].name for i in np.flatnonzero(mask))
                raise ValueError(
                    f"option {self.options[choice].name!r} is outside its initiation set "
                    f"(available: {available})"
                )
            choice = int(np.flatnonzero(mask)[0])
        self.option = choice
        self.option_steps = 0
        self._skip_run = 0
        self._option_topics = set()
        self._high_acc = 0.0
        info = self._info()
        info[HierInfo.REJECTED] = rejected
        no = {"__all__": False}
        return {LOW: self._low_obs()}, {}, dict(no), dict(no), {LOW: info}

    def _low_step(self, action: Any) -> tuple[Any, ...]:
        assert self.option is not None
        hier, sim = self.hierarchy, self.sim
        option = self.options[self.option]
        topic = sim.catalog.topic
        history_topics, history_clicked = self._history_topics()
        r = self.last_result = sim.step(np.asarray(action).reshape(1, -1))
        self._history = None

        shown_items = r.slate_items[0][r.shown[0]]
        shown_topics = topic.take(shown_items).astype(np.int64)
        f = following(
            option, shown_topics, history_topics, history_clicked, frozenset(self._option_topics)
        )
        self._option_topics.update(int(x) for x in shown_topics)
        np.add.at(self._topic_shown, shown_topics, 1.0)
        if r.clicked[0]:
            self._topic_clicks[topic[r.item[0]]] += 1.0

        engagement = float(r.reward[0])
        ended, terminated, truncated = (
            bool(r.session_ended[0]),
            bool(r.terminated[0]),
            bool(r.truncated[0]),
        )
        # Long-term terms (SMDP reward of the high level only): the session goes on, or the user
        # comes back after it (a truncated lifetime is a return that the bound cut off).
        long_term = hier.continuation_weight * (not ended) + hier.return_weight * (
            ended and not terminated
        )
        low_reward = engagement + hier.following_weight * f
        self._high_acc += engagement + long_term
        self.option_steps += 1
        missed = (not r.clicked[0]) or bool(r.skip[0])
        self._skip_run = self._skip_run + 1 if missed else 0

        done = terminated or truncated
        reason = termination(
            self.option_steps,
            self._skip_run,
            ended,
            done or bool(self.initiation_mask(fallback=False)[self.option]),
            hier,
        )
        info = self._info()
        info.update(
            {
                HierInfo.FLAT_REWARD: engagement,
                HierInfo.FOLLOWING: f,
                HierInfo.LONG_TERM: float(long_term),
                HierInfo.OPTION_STEP: self.option_steps,
                HierInfo.TERMINATED_BY: reason,
                "clicked": bool(r.clicked[0]),
                "skip": bool(r.skip[0]),
                "session_ended": ended,
            }
        )
        rewards = {LOW: float(low_reward)}
        if reason is not None:
            rewards[HIGH] = float(self._high_acc)
            self.option = None
        if done:
            obs = {HIGH: self._high_obs(), LOW: self._low_obs()}
            flags_t = {HIGH: terminated, LOW: terminated, "__all__": terminated}
            flags_u = {HIGH: truncated, LOW: truncated, "__all__": truncated}
            return obs, rewards, flags_t, flags_u, {HIGH: dict(info), LOW: info}
        no = {"__all__": False}
        if reason is not None:
            return {HIGH: self._high_obs()}, rewards, dict(no), dict(no), {HIGH: info}
        return {LOW: self._low_obs()}, rewards, dict(no), dict(no), {LOW: info}

    # ---- observations --------------------------------------------------------------------------
    def initiation_mask(self, fallback: bool = True) -> np.ndarray:
        """(K,) bool: options whose initiation set holds now (all of them if none does and
        ``fallback``)."""
        sim = self.sim
        cand = sim.candidates[0]
        history_topics, history_clicked = self._history_topics()
        mask = initiation_mask(
            self.options,
            sim.catalog.topic.take(cand).astype(np.int64),
            sim.candidate_valid[0],
            history_topics,
            history_clicked,
            fallback,
        )
        return mask

    def _history_topics(self) -> tuple[np.ndarray, np.ndarray]:
        # Read two or three times per step (the option's following term, its initiation set,
        # the observation): computed once per simulator step.
        if self._history is None:
            items = self.sim.history_items[0]
            topics = np.where(items >= 0, self.sim.catalog.topic.take(np.maximum(items, 0)), -1)
            self._history = (topics.astype(np.int64), self.sim.history_responses[0, :, 0] > 0)
        return self._history

    def _high_obs(self) -> dict[str, np.ndarray]:
        session = {key: value[0] for key, value in observe(self.sim).items()}
        return high_observation(
            session, self._topic_shown, self._topic_clicks, self.initiation_mask()
        )

    def _low_obs(self) -> dict[str, np.ndarray]:
        session = {key: value[0] for key, value in observe(self.sim).items()}
        return low_observation(
            session,
            len(self.options),
            self.option,
            self.option_steps,
            self.hierarchy.option_budget,
        )

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "user_id": int(self.sim.user_id[0]),
            "session_index": int(self.sim.session_index[0]),
            "step_in_session": int(self.sim.step_in_session[0]),
        }
        if self.option is not None:
            info[HierInfo.OPTION] = self.option
            info[HierInfo.OPTION_NAME] = self.options[self.option].name
        return info
