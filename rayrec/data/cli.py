"""``rayrec data from-served LOGDIR --env SPEC --out DIR``: a served log as a rayrec log folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from rayrec.data.from_served import ServedLogError, convert_served
from rayrec.sim import SimConfig
from rayrec.specs import EnvSpec, load_yaml

__all__ = ["add_parser", "run"]


def add_parser(actions: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``from-served`` to the ``rayrec data`` actions; the handler is ``run``."""
    p = actions.add_parser(
        "from-served",
        help="convert a served log (rayrec serve --log-dir) into a log folder for --data",
    )
    p.add_argument("log_dir", type=Path, metavar="LOGDIR", help="the served log folder")
    p.add_argument(
        "--env",
        type=Path,
        required=True,
        help="env spec of the served world (the one its traffic played: its context scaling)",
    )
    p.add_argument("--out", type=Path, required=True, help="log folder to write (must not exist)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Convert ``args.log_dir``; bad input raises a SpecError (one line, exit code 2)."""
    env = EnvSpec.from_dict(load_yaml(args.env), str(args.env))
    if not isinstance(env.config, SimConfig):
        raise ServedLogError(f"--env {args.env}: served logs are of session envs, not {env.id}")
    meta = convert_served(args.log_dir, env, args.out)
    served = meta["served"]
    print(
        f"{args.out}: {meta['rows']} rows, {meta['episodes']} episodes, {meta['files']} file(s) "
        f"from {served['impressions']} impressions and {served['feedback']} feedback events; "
        f"{served['impressions_without_feedback']} impression(s) without feedback (no response), "
        f"{served['feedback_without_impression']} feedback event(s) without an impression "
        f"(dropped), {served['duplicate_impressions'] + served['duplicate_feedback']} duplicate(s) "
        f"dropped; behaviour return {meta['behavior_return_mean']:.2f}"
    )
    return 0
