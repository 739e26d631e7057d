"""What RLlib 2.60 lacks: the Ape-X arrangement of DQN (and, later, discrete CQL)."""

from rayrec.algorithms.apex import APEX_KEY, ApexEnvRunner, ladder_epsilon

__all__ = ["APEX_KEY", "ApexEnvRunner", "ladder_epsilon"]
