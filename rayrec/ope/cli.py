"""``rayrec ope``: estimate what a policy would earn from logs of another one.

::

    rayrec ope --data DIR|obd:CAMPAIGN --policy CHECKPOINT|NAME [--estimators LIST]
               [--level step|slate|trajectory] [--seed S] [--json]

``add_parser`` registers the command on the ``rayrec`` parser; ``run`` executes it and returns the
exit code. Bad input prints one line on stderr and returns 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rayrec.datasets.obd import DataError
from rayrec.ope.estimate import Estimate, EstimatorConfig
from rayrec.ope.slate import estimate_slate
from rayrec.ope.step import STEP_ESTIMATORS, estimate_step
from rayrec.ope.trajectory import TRAJECTORY_ESTIMATORS, estimate_trajectory

__all__ = ["FQE", "LEVELS", "OPEError", "add_parser", "run"]

EXIT_USAGE = 2
LEVELS = {
    "step": STEP_ESTIMATORS,
    "slate": ("sips", "rips"),
    "trajectory": TRAJECTORY_ESTIMATORS,
}
"""Estimators per level (``iips`` needs marginal probabilities, which logs do not carry)."""
FQE = ("linear", "network")
"""Q functions of ``fqe`` and ``dr-rl``: linear in hand-made features, or the candidate Q network."""


class OPEError(ValueError):
    """A usage problem of ``rayrec ope``: printed as one line, exit code 2."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ope`` to the ``rayrec`` subcommands."""
    p = subparsers.add_parser("ope", help="off-policy evaluation of a policy on logged data")
    p.add_argument(
        "--data",
        required=True,
        help="log folder (rayrec collect) or obd:CAMPAIGN (Open Bandit Dataset: all, men, women)",
    )
    p.add_argument(
        "--policy",
        required=True,
        help="evaluation policy: a checkpoint, random, popular, heuristic; bts on obd:",
    )
    p.add_argument(
        "--mode",
        default="sample",
        help="how a checkpoint chooses: sample (its softmax, as served with mode sample; "
        "default) or greedy (its top k, as rayrec evaluate plays it)",
    )
    p.add_argument("--estimators", help="comma-separated (default: every one of the level)")
    p.add_argument("--level", default="step", help="step (default), slate or trajectory")
    p.add_argument("--seed", type=int, default=0, help="bootstrap, folds, Monte Carlo (default 0)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates (1000)")
    p.add_argument("--switch-tau", type=float, default=10.0, help="Switch-DR weight threshold (10)")
    p.add_argument(
        "--fqe",
        default="linear",
        help="Q function of fqe and dr-rl (trajectory level): linear (ridge on hand-made "
        "features, refitted per bootstrap replicate; default) or network (rayrec's candidate Q "
        "network fitted once on the whole log; minutes on a CPU)",
    )
    p.add_argument(
        "--fqe-phases", type=int, default=None, help="--fqe network: target refreshes (default 200)"
    )
    p.add_argument(
        "--fqe-updates", type=int, default=None, help="--fqe network: Adam steps per phase (12)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=run)
    return p


def _estimators(level: str, text: str | None) -> tuple[str, ...]:
    if level not in LEVELS:
        raise OPEError(f"--level {level!r}: unknown level; known: {', '.join(LEVELS)}")
    known = LEVELS[level]
    if text is None:
        return known
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise OPEError("--estimators is empty")
    for name in names:
        if name not in known:
            raise OPEError(
                f"--estimators {name!r}: unknown at --level {level}; known: {', '.join(known)}"
            )
    return names


def evaluate_obd(
    campaign: str, policy: str, level: str, estimators: tuple[str, ...], config: EstimatorConfig
) -> tuple[dict[str, Estimate], float | None]:
    """Estimates and ground truth for ``obd:CAMPAIGN`` (the random log as data)."""
    from rayrec.ope.obd import obd_ground_truth, obd_step_log

    if level != "step":
        raise OPEError(f"obd:{campaign} is a slot-level log: use --level step, not {level}")
    log = obd_step_log(campaign, policy, seed=config.seed)
    return estimate_step(log, estimators, config), obd_ground_truth(campaign, policy)


def evaluate_sim(
    folder: str,
    policy: str,
    level: str,
    estimators: tuple[str, ...],
    config: EstimatorConfig,
    mode: str = "sample",
    fqe: str = "linear",
    fqe_options: dict[str, int] | None = None,
) -> tuple[dict[str, Estimate], float | None]:
    """Estimates and ground truth for a ``rayrec collect`` log; a checkpoint chooses by ``mode``
    (``sample`` or ``greedy``); ``fqe`` and ``dr-rl`` use the ``fqe`` Q function (:data:`FQE`)."""
    # The adapter imports the simulator and Ray's RLModule loader: only when a log needs it.
    from rayrec.ope.network_fqe import NetworkFQEConfig
    from rayrec.ope.policies import ground_truth, load_sim_logs

    if fqe not in FQE:
        raise OPEError(f"--fqe {fqe!r}: must be one of {', '.join(FQE)}")
    network = (
        NetworkFQEConfig(seed=config.seed, **(fqe_options or {}))
        if fqe == "network" and level == "trajectory" and {"fqe", "dr-rl"} & set(estimators)
        else None
    )
    logs, eval_policy = load_sim_logs(
        folder, policy, seed=config.seed, mode=mode, network_fqe=network, gamma=config.gamma
    )
    if level == "step":
        if logs.step is None:
            raise OPEError(f"{folder} logs slates of {logs.config.slate_size}: use --level slate")
        # The step-level value is per decision on the logged states: no simulator truth for it.
        return estimate_step(logs.step, estimators, config), None
    if level == "slate":
        return estimate_slate(logs.slate, estimators, config), None
    estimates = estimate_trajectory(logs.trajectory, estimators, config, q_values=logs.q_values)
    return estimates, ground_truth(logs, eval_policy)


def _table(data: str, policy: str, truth: float | None, estimates: dict[str, Estimate]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{policy} on {data}", show_header=True, header_style="bold")
    for column in ("estimator", "estimate", "95% CI", "ESS", "rel. error", "trust"):
        table.add_column(column, justify="left" if column in ("estimator", "trust") else "right")
    for e in estimates.values():
        error = "" if truth in (None, 0) else f"{abs(e.value - truth) / abs(truth):.3f}"
        table.add_row(
            e.name,
            f"{e.value:.5g}",
            f"[{e.ci95[0]:.5g}, {e.ci95[1]:.5g}]",
            f"{e.ess:.0f} / {e.n}",
            error,
            "LOW ESS: do not trust" if e.degenerate else "ok",
        )
    Console(width=120).print(table)
    sys.stdout.write(f"ground truth: {'unknown' if truth is None else f'{truth:.5g}'}\n")


def run(args: argparse.Namespace) -> int:
    """Execute ``rayrec ope``; returns the exit code."""
    try:
        estimators = _estimators(args.level, args.estimators)
        config = EstimatorConfig(
            seed=args.seed, n_bootstrap=args.bootstrap, switch_tau=args.switch_tau
        )
        fqe_options = {
            name: value
            for name, value in (("phases", args.fqe_phases), ("updates", args.fqe_updates))
            if value is not None
        }
        if fqe_options and args.fqe != "network":
            raise OPEError("--fqe-phases and --fqe-updates apply to --fqe network")
        if args.data.startswith("obd:"):
            if args.mode != "sample":
                raise OPEError(f"--mode {args.mode}: applies to checkpoints on simulator logs")
            if args.fqe != "linear" or fqe_options:
                raise OPEError(f"--fqe {args.fqe}: applies to simulator logs (trajectory level)")
            found = evaluate_obd(args.data[4:], args.policy, args.level, estimators, config)
        else:
            from rayrec.ope.policies import USER_ERRORS

            try:
                found = evaluate_sim(
                    *(args.data, args.policy, args.level, estimators, config, args.mode),
                    *(args.fqe, fqe_options),
                )
            except USER_ERRORS as e:
                raise OPEError(str(e)) from e
    except (OPEError, DataError, ValueError) as e:
        sys.stderr.write(f"rayrec: error: {e}\n")
        return EXIT_USAGE
    estimates, truth = found
    for e in estimates.values():
        if e.degenerate:
            sys.stderr.write(
                f"rayrec: warning: {e.name}: ESS {e.ess:.1f} of {e.n} "
                f"(< {config.min_ess_fraction:.0%}); the weights are degenerate, do not trust it\n"
            )
    if args.json:
        out = {
            "data": args.data,
            "policy": args.policy,
            "ground_truth": truth,
            "estimates": {name: e.to_dict() for name, e in estimates.items()},
        }
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        _table(args.data, args.policy, truth, estimates)
    return 0
