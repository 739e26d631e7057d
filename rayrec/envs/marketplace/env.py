"""``MarketplaceEnv``: the marketplace game as an RLlib ``MultiAgentEnv``.

Agents are the parties of the roles in ``learning_roles``: ``platform``, ``creator_i``,
``advertiser_i`` and ``user_i`` (strategic users). The game plays every other party itself
(scripted platform, creators and advertisers; users through the simulator's choice model). All
agents act at every period (simultaneous moves); the episode is truncated after T periods.

Observations are flat float32 Boxes: a role's local view, followed by the global state when
``global_state`` is on (a centralised critic reads it; the actor reads only the first
:meth:`MarketplaceEnv.local_dim` entries). Layouts: docs/marketplace.md, section "Observations".
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.env.multi_agent_env import MultiAgentEnv

from rayrec.envs.marketplace.config import ROLES, MarketplaceConfig
from rayrec.envs.marketplace.game import MarketplaceGame, PeriodOutcome

__all__ = ["OBS_LIMIT", "MarketplaceEnv", "agent_role", "role_agents"]

OBS_LIMIT = 10.0
"""Observations are clipped to [-OBS_LIMIT, OBS_LIMIT]."""
_NUM_PLATFORM_SCALARS = 10
_NUM_CREATOR_SCALARS = 6
_NUM_ADVERTISER_SCALARS = 9
_NUM_USER_SCALARS = 6
_NUM_GLOBAL_SCALARS = 7


def agent_role(agent_id: str) -> str:
    """The role of an agent id: ``platform`` -> platform, ``creator_3`` -> creator."""
    return agent_id.split("_", 1)[0]


def role_agents(config: MarketplaceConfig, role: str) -> list[str]:
    """The agent ids of ``role`` under ``config`` (whether or not the role learns)."""
    counts = {
        "platform": 1,
        "creator": config.num_creators,
        "advertiser": config.num_advertisers,
        "user": config.num_strategic_users,
    }
    if role == "platform":
        return ["platform"]
    return [f"{role}_{i}" for i in range(counts[role])]


class MarketplaceEnv(MultiAgentEnv):
    """The multi-stakeholder marketplace (issue #10) as an RLlib multi-agent env.

    Args:
        config: an RLlib ``EnvContext`` / dict of :class:`MarketplaceConfig` fields, optionally
            with a ``seed`` entry (used when ``reset`` is called without one the first time).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        values = dict(config or {})
        self._default_seed = values.pop("seed", None)
        values.pop("num_envs", None)
        self.config = MarketplaceConfig.from_dict(values)
        cfg = self.config
        self.game = MarketplaceGame(cfg, seed=self._default_seed)
        self.possible_agents = [
            aid for role in ROLES if role in cfg.learning_roles for aid in role_agents(cfg, role)
        ]
        self.agents = list(self.possible_agents)
        self._has_reset = False
        self.observation_spaces = {
            aid: gym.spaces.Box(-OBS_LIMIT, OBS_LIMIT, (self.obs_dim(aid),), np.float32)
            for aid in self.possible_agents
        }
        self.action_spaces = {aid: self._action_space(aid) for aid in self.possible_agents}
        # Episode sums of every party (for the welfare metrics), see metrics.py.
        self.totals: dict[str, Any] = {}

    # ---- spaces --------------------------------------------------------------------------------
    def _action_space(self, agent_id: str) -> gym.Space:
        cfg, role = self.config, agent_role(agent_id)
        if role == "platform":
            levels = cfg.ranking_levels
            return gym.spaces.MultiDiscrete([levels, levels, cfg.ad_load_cap + 1])
        if role == "creator":
            return gym.spaces.MultiDiscrete([self.num_topics, cfg.effort_levels])
        if role == "advertiser":
            return gym.spaces.Discrete(cfg.bid_levels)
        return gym.spaces.Discrete(cfg.pickiness_levels + 1)

    @property
    def num_topics(self) -> int:
        return int(self.game.topic_centres.shape[0])

    def local_dim(self, agent_id: str) -> int:
        """Length of an agent's own view (the prefix of its observation the actor may read)."""
        role, t = agent_role(agent_id), self.num_topics
        return {
            "platform": _NUM_PLATFORM_SCALARS + t,
            "creator": _NUM_CREATOR_SCALARS + 2 * t,
            "advertiser": _NUM_ADVERTISER_SCALARS,
            "user": _NUM_USER_SCALARS,
        }[role]

    @property
    def global_dim(self) -> int:
        """Length of the global state (0 unless ``global_state`` is on)."""
        if not self.config.global_state:
            return 0
        cfg = self.config
        return _NUM_GLOBAL_SCALARS + cfg.num_creators + cfg.num_advertisers + self.num_topics

    def obs_dim(self, agent_id: str) -> int:
        return self.local_dim(agent_id) + self.global_dim

    # ---- the MultiAgentEnv API -----------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is None and not self._has_reset:
            seed = self._default_seed
        self._has_reset = True
        if seed is not None:
            self.game.reset(seed)
        else:
            # Continue the episode streams: draw the next episode's seed from the last one's.
            self.game.reset(int(self.game._rng.integers(0, 2**63 - 1)))
        self.agents = list(self.possible_agents)
        cfg = self.config
        self.totals = {
            "platform": 0.0,
            "creator": np.zeros(cfg.num_creators),
            "advertiser": np.zeros(cfg.num_advertisers),
            "user": 0.0,
            "clicks": 0,
            "revenue": 0.0,
            "leavers": 0,
            "ads_shown": 0,
            "slots": 0,
            "exposure": np.zeros(cfg.num_creators),
            "periods": 0,
            "users_per_period": cfg.num_users,
        }
        return self._observations(), {aid: {} for aid in self.agents}

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        game, cfg = self.game, self.config
        learning = cfg.learning_roles
        platform = (
            np.asarray(action_dict["platform"])
            if "platform" in learning
            else game.scripted_platform()
        )
        if "creator" in learning:
            creators = np.stack([np.asarray(action_dict[a]) for a in role_agents(cfg, "creator")])
        else:
            creators = game.scripted_creators()
        if "advertiser" in learning:
            bids = np.array([int(action_dict[a]) for a in role_agents(cfg, "advertiser")])
        else:
            bids = game.scripted_bids()
        users = None
        if "user" in learning:
            users = np.array([int(action_dict[a]) for a in role_agents(cfg, "user")])
        outcome = game.step(platform, creators, bids, users)
        self._accumulate(outcome)
        rewards = self._rewards(outcome)
        done = game.period >= cfg.num_periods
        obs = self._observations()
        terminateds = dict.fromkeys(self.agents, False)
        terminateds["__all__"] = False
        truncateds = dict.fromkeys(self.agents, done)
        truncateds["__all__"] = done
        infos = {aid: {} for aid in self.agents}
        if done:
            self.agents = []
        return obs, rewards, terminateds, truncateds, infos

    # ---- rewards -------------------------------------------------------------------------------
    def own_rewards(self, outcome: PeriodOutcome) -> dict[str, float]:
        """Each agent's own reward for ``outcome`` (the competitive objective)."""
        cfg = self.config
        out: dict[str, float] = {}
        for aid in self.possible_agents:
            role = agent_role(aid)
            if role == "platform":
                out[aid] = outcome.platform_reward
            else:
                i = int(aid.rsplit("_", 1)[1])
                source = {
                    "creator": outcome.creator_reward,
                    "advertiser": outcome.advertiser_reward,
                    "user": outcome.user_utility[: cfg.num_strategic_users],
                }[role]
                out[aid] = float(source[i])
        return out

    def _rewards(self, outcome: PeriodOutcome) -> dict[str, float]:
        from rayrec.envs.marketplace.metrics import period_welfare

        cfg = self.config
        own = self.own_rewards(outcome)
        if cfg.objective == "competitive":
            return own
        total = period_welfare(outcome, cfg.welfare_weights)["total"]
        if cfg.objective == "cooperative":
            return dict.fromkeys(own, total)
        alpha, n = cfg.cooperation, len(own)
        return {aid: (1 - alpha) * r + alpha * total / n for aid, r in own.items()}

    def _accumulate(self, o: PeriodOutcome) -> None:
        t = self.totals
        t["platform"] += o.platform_reward
        t["creator"] += o.creator_reward
        t["advertiser"] += o.advertiser_reward
        t["user"] += float(o.user_utility.sum())
        t["clicks"] += o.clicks
        t["revenue"] += o.revenue
        t["leavers"] += o.leavers
        t["ads_shown"] += o.ads_shown
        t["slots"] += self.config.slate_size
        t["exposure"] += o.creator_exposure
        t["periods"] += 1

    # ---- observations --------------------------------------------------------------------------
    def _observations(self) -> dict[str, np.ndarray]:
        glob = self._global_state() if self.config.global_state else np.zeros(0)
        out = {}
        for aid in self.agents:
            local = self._local(aid)
            out[aid] = np.clip(np.concatenate([local, glob]), -OBS_LIMIT, OBS_LIMIT).astype(
                np.float32
            )
        return out

    def _period_stats(self) -> tuple[float, float, float, float, float]:
        """Click rate, ad-click rate, leave rate, revenue per user and ad load of the last period."""
        game, cfg = self.game, self.config
        o = game.last
        if o is None:
            return 0.0, 0.0, 0.0, 0.0, 0.0
        b = cfg.num_users
        return (
            o.clicks / b,
            float(o.ad_clicks.sum()) / b,
            o.leavers / b,
            o.revenue / b,
            o.ads_shown / max(cfg.ad_load_cap, 1),
        )

    def _local(self, agent_id: str) -> np.ndarray:
        game, cfg = self.game, self.config
        role = agent_role(agent_id)
        time = game.period / cfg.num_periods
        clicks, ad_clicks, leave, revenue, load = self._period_stats()
        o = game.last
        if role == "platform":
            top = max(cfg.ranking_levels - 1, 1)
            pa = game.last_platform_action
            watched = game.last_user_watch[game.last_user_clicked]
            scalars = [time, clicks, ad_clicks, leave, revenue, load, pa[0] / top, pa[1] / top]
            scalars += [float(watched.mean()) if watched.size else 0.0, float(game.period == 0)]
            return np.concatenate([scalars, game.topic_demand])
        i = int(agent_id.rsplit("_", 1)[1])
        if role == "creator":
            b, k = cfg.num_users, cfg.slate_size
            exposure = o.creator_exposure[i] / (b * k) if o is not None else 0.0
            own_clicks = o.creator_clicks[i] / b if o is not None else 0.0
            topic, effort = game.last_creator_action[i]
            mine = (game.creator_of == i) & game.alive
            scalars = [
                time,
                exposure,
                own_clicks,
                effort / (cfg.effort_levels - 1),
                float(game.watch_estimate[mine].mean()) if mine.any() else 0.0,
                mine.sum() / cfg.creator_slots,
            ]
            onehot = np.zeros(self.num_topics)
            onehot[int(np.clip(topic, 0, self.num_topics - 1))] = 1.0
            return np.concatenate([scalars, game.topic_demand, onehot])
        if role == "advertiser":
            won = o is not None and i in o.auction.winners
            slot = int(np.flatnonzero(o.auction.winners == i)[0]) if won else -1
            price = float(o.auction.prices[slot]) if won else 0.0
            ad_clicks_i = o.ad_clicks[i] / cfg.num_users if o is not None else 0.0
            return np.array(
                [
                    time,
                    game.ad_value[i] / cfg.max_bid,
                    game.last_bids[i] / cfg.max_bid,
                    float(won),
                    (slot + 1) / cfg.slate_size,
                    price / cfg.max_bid,
                    ad_clicks_i,
                    load,
                    cfg.reserve_price / cfg.max_bid,
                ]
            )
        return np.array(
            [
                time,
                game.satisfaction[i] / cfg.satisfaction_limit,
                float(game.last_user_clicked[i]),
                float(game.last_user_watch[i]),
                (o.ads_shown if o is not None else 0) / cfg.slate_size,
                float(game.last_user_left[i]),
            ]
        )

    def _global_state(self) -> np.ndarray:
        game, cfg = self.game, self.config
        clicks, ad_clicks, leave, revenue, load = self._period_stats()
        o = game.last
        b, k = cfg.num_users, cfg.slate_size
        exposure = o.creator_exposure / (b * k) if o is not None else np.zeros(cfg.num_creators)
        scalars = [
            game.period / cfg.num_periods,
            clicks,
            ad_clicks,
            leave,
            revenue,
            float(game.satisfaction.mean()) / cfg.satisfaction_limit,
            load,
        ]
        return np.concatenate([scalars, exposure, game.last_bids / cfg.max_bid, game.topic_demand])
