"""What RLlib 2.60 lacks (the Ape-X arrangement, discrete CQL, QR-DQN, top-K off-policy-corrected
REINFORCE, per-level GAE) and the RLlib internals rayrec owns (env runner, episodes, replay,
transitions, fast paths)."""

from rayrec.algorithms.apex import APEX_KEY, ApexEnvRunner, ladder_epsilon

__all__ = ["APEX_KEY", "ApexEnvRunner", "ladder_epsilon"]
