"""The ``rayrec`` command line: subcommands, flags and their argument types."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NoReturn

from rayrec.data import cli as data_cli
from rayrec.datasets import cli as datasets_cli
from rayrec.loop import cli as loop_cli
from rayrec.loop import rollout as rollout_cli
from rayrec.nextitem import cli as nextitem_cli
from rayrec.ope import cli as ope_cli

__all__ = ["EXIT_USAGE", "build_parser"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors as a single line (and exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _number(cast: type, ok: Any, what: str) -> Any:
    """An argparse type: ``cast`` the text and require ``ok(value)``, else name what is allowed."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_positive_float = _number(float, lambda v: 0 < v < math.inf, "a positive number")
_finite_float = _number(float, math.isfinite, "a finite number")
_int = _number(int, lambda v: True, "an integer")


def _baselines(text: str) -> tuple[str, ...]:
    from rayrec.evaluation import BASELINES

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in BASELINES:
            raise argparse.ArgumentTypeError(
                f"unknown baseline {name!r}; known: {', '.join(BASELINES)}"
            )
    return names


def build_parser() -> _Parser:
    p = _Parser(prog="rayrec", description="Deep RL for sequential recommendation on Ray.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a policy on an environment")
    t.add_argument("--env", type=Path, help="environment spec (envs/*.yaml)")
    t.add_argument("--policy", type=Path, help="policy spec (policies/*.yaml)")
    t.add_argument("--iterations", type=_positive_int, help="train until this iteration")
    t.add_argument("--time-budget", type=_positive_float, help="stop after this many seconds")
    t.add_argument("--stop-return", type=_finite_float, help="stop at this mean training return")
    t.add_argument("--out", type=Path, help="run folder (default runs/ALGO-TIMESTAMP)")
    t.add_argument("--seed", type=_int, default=0, help="seed of the run (default 0)")
    t.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field: training.lr=0.0005, model.encoder=gru, env.num_items=1000",
    )
    t.add_argument(
        "--profile",
        help="resource profile: a name in profiles/ (local, cluster-cpu, cluster-gpu) or a YAML file",
    )
    t.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument(
        "--init-from",
        type=Path,
        metavar="CHECKPOINT",
        help="start from the RLModule weights of this checkpoint (a warm start, e.g. BC)",
    )
    t.add_argument(
        "--critic-warmup",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --init-from: only the critic learns for the first N iterations",
    )
    t.add_argument("--checkpoint-every", type=_positive_int, default=5, metavar="N")
    t.add_argument("--eval-users", type=_positive_int, default=None, metavar="N")
    t.add_argument("--baselines", type=_baselines, default=None, metavar="LIST")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument(
        "--data",
        type=Path,
        help="log folder (rayrec collect, rayrec data from-served) for offline algorithms: "
        "DiscreteCQL, BC, MARWIL, TopKReinforce",
    )

    c = sub.add_parser("collect", help="log a behaviour policy's sessions to parquet")
    c.add_argument("--env", type=Path, required=True, help="environment spec (envs/*.yaml)")
    c.add_argument(
        "--behavior",
        required=True,
        help="random | popular | greedy | ctr | heuristic | epsilon-B:E (B: greedy, ctr, popular, "
        "heuristic) | checkpoint:PATH",
    )
    c.add_argument("--users", type=_positive_int, required=True, help="user lifetimes to log")
    c.add_argument("--out", type=Path, required=True, help="log folder (must not exist)")
    c.add_argument("--seed", type=_int, default=0)
    c.add_argument("--set", action="append", default=[], metavar="env.FIELD=VALUE")
    c.add_argument("--rows-per-file", type=_positive_int, default=50_000, metavar="N")

    e = sub.add_parser("evaluate", help="compare a checkpoint with baselines in the simulator")
    e.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    e.add_argument("--env", type=Path, help="environment spec (default: the run's own)")
    e.add_argument("--users", type=_positive_int, default=1000)
    e.add_argument("--seed", type=_int, default=12345)
    e.add_argument(
        "--baselines",
        type=_baselines,
        default=None,
        help="comma-separated (default: the run's own evaluation.baselines)",
    )
    e.add_argument("--json", action="store_true", help="print the results as JSON")

    s = sub.add_parser("serve", help="serve a checkpoint over HTTP with Ray Serve")
    s.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory (model A)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    s.add_argument("--port", type=_number(int, lambda v: 1 <= v <= 65535, "a port"), default=8000)
    s.add_argument("--replicas", type=_positive_int, default=1, help="Serve replicas (default 1)")
    s.add_argument("--log-dir", type=Path, help="impression log folder (default: no log)")
    s.add_argument("--ab", type=Path, metavar="CHECKPOINT_B", help="serve a second checkpoint")
    s.add_argument(
        "--split",
        type=_number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        help="share of users (stable hash of the user id) served by --ab (default 0.5)",
    )
    s.add_argument("--env", type=Path, help="environment spec (default: the run's own)")
    s.add_argument(
        "--explore-budget",
        type=_number(float, lambda v: 0 <= v <= 1, "a number in [0, 1]"),
        help="most share of a replica's last 1,000 slates that are sampled; sample requests beyond "
        "it are served greedily (default: no cap)",
    )
    s.add_argument(
        "--propensity-floor",
        type=_number(float, lambda v: 0 <= v < 1, "a number in [0, 1)"),
        default=0.0,
        metavar="EPS",
        help="sampled slates mix the policy with EPS-uniform over the candidates (default 0)",
    )
    s.add_argument(
        "--fallback",
        choices=("popular", "ctr"),
        help="when the model fails or gives non-finite scores, serve the greedy slate by this "
        "candidate scalar (default: 503)",
    )
    s.add_argument(
        "--api-key-file",
        type=Path,
        help="file with an API key that every /v1/* request must send (Authorization: Bearer KEY)",
    )
    s.add_argument(
        "--request-id-key-file",
        type=Path,
        help="file with the hex key that signs request ids (default $RAYREC_REQUEST_ID_KEY, else "
        "one per deployment): keeps feedback valid across redeploys",
    )
    s.add_argument("--num-cpus", type=_positive_float, default=0.5, help="CPUs per replica")
    s.add_argument(
        "--max-queued",
        type=_positive_int,
        default=128,
        help="requests queued when every replica is busy; beyond: 503 + Retry-After (default 128)",
    )
    s.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=10.0,
        help="seconds before an unanswered request gets 408 (default 10)",
    )
    s.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    s.add_argument(
        "--ingress",
        choices=("direct", "proxy"),
        help="direct (default in-process): the replica answers HTTP on --port itself (Ray Serve "
        "direct ingress, about 4x faster), Serve's proxy on --proxy-port; proxy (default with "
        "--address): Serve's proxy on --port",
    )
    s.add_argument(
        "--proxy-port",
        type=_number(int, lambda v: 1 <= v <= 65535, "a port"),
        help="with --ingress direct: the port of Serve's proxy (default: a free port)",
    )

    sub.add_parser("info", help="environments, policy presets and resources")

    h = sub.add_parser("tune", help="hyperparameter search with Ray Tune over a search space")
    h.add_argument("--env", type=Path, help="environment spec (envs/*.yaml)")
    h.add_argument("--policy", type=Path, help="policy spec (policies/*.yaml)")
    h.add_argument("--space", type=Path, help="search space (tune/*.yaml)")
    h.add_argument("--samples", type=_positive_int, help="trials to sample (default: the space's)")
    h.add_argument("--out", type=Path, help="sweep folder (default runs/tune-ALGO-TIMESTAMP)")
    h.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as in train")
    h.add_argument("--profile", help="resource profile, as in train")
    h.add_argument("--address", help="Ray cluster address (default: start Ray in-process)")
    h.add_argument("--resume", action="store_true", help="continue the interrupted sweep in --out")
    h.add_argument("--quiet", action="store_true", help="no Tune progress output")

    s = sub.add_parser("submit", help="run a rayrec command as a Ray job on a cluster")
    s.add_argument("--address", help="dashboard URL http://HOST:8265 (default $RAY_ADDRESS)")
    s.add_argument("--no-wait", action="store_true", help="print the job id and return")
    s.add_argument("--working-dir", type=Path, help="project folder to upload (default: this one)")
    s.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ARGS", help="e.g. -- train")
    j = sub.add_parser("jobs", help="list the cluster's jobs, print a job's log, stop a job")
    j.add_argument("action", choices=("list", "logs", "stop"))
    j.add_argument("job_id", nargs="?", metavar="ID")
    j.add_argument("--address", help="dashboard URL http://HOST:8265 (default $RAY_ADDRESS)")
    j.add_argument("--follow", action="store_true", help="logs: follow until the job ends")
    # Subcommands that bring their own parser and handler (``set_defaults(handler=...)``).
    data_cli.add_parser(datasets_cli.add_parser(sub))
    nextitem_cli.add_parser(sub)
    ope_cli.add_parser(sub)
    loop_cli.add_parser(sub)
    rollout_cli.add_parser(sub)
    return p
