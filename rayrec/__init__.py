"""rayrec: deep reinforcement learning for sequential recommendation on Ray."""

from rayrec import envs as _envs  # noqa: F401  (registers the Gymnasium ids)

__version__ = "0.1.0"
__all__ = ["__version__"]
