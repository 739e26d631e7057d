"""rayrec: deep reinforcement learning for sequential recommendation on Ray.

``import rayrec.envs`` registers the Gymnasium ids (``rayrec/Session-v0``); importing the package
itself imports nothing heavy, so ``rayrec.sim`` runs with numpy alone.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
