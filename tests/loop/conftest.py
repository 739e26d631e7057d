"""The serving tests' checkpoints and specs (untrained RLModules of a small world), reused."""

from tests.serve.conftest import module_runs, serve_specs

__all__ = ["module_runs", "serve_specs"]
