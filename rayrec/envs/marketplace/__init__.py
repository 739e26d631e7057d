"""The multi-stakeholder marketplace game (issue #10): platform, creators, advertisers, users.

This package's top level is Ray-free (specs import it before Ray starts). The RLlib
``MultiAgentEnv`` is :class:`rayrec.envs.marketplace.env.MarketplaceEnv`, the PettingZoo
``ParallelEnv`` view is in ``rayrec.envs.marketplace.pettingzoo`` (it needs pettingzoo), training
helpers are in ``rayrec.envs.marketplace.training``. Docs: docs/marketplace.md.
"""

from rayrec.envs.marketplace.auction import AuctionResult, run_auction
from rayrec.envs.marketplace.config import ROLES, MarketplaceConfig
from rayrec.envs.marketplace.game import MarketplaceGame, PeriodOutcome
from rayrec.envs.marketplace.metrics import MarketMetrics, episode_metrics, gini, period_welfare

__all__ = [
    "MARKETPLACE_ENV_ID",
    "ROLES",
    "AuctionResult",
    "MarketMetrics",
    "MarketplaceConfig",
    "MarketplaceGame",
    "PeriodOutcome",
    "episode_metrics",
    "gini",
    "period_welfare",
    "run_auction",
]

MARKETPLACE_ENV_ID = "rayrec/Marketplace-v0"
"""The env id of marketplace specs (``envs/marketplace.yaml``); an RLlib env, not a Gymnasium id."""
