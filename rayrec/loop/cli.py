"""``rayrec traffic``: simulated users against a live endpoint, and the A/B comparison of its arms.

::

    rayrec traffic --url URL --env SPEC --users N [--concurrency C] [--seed S] [--out DIR]
                   [--json] [--quiet] [--api-key-file F]

``add_parser`` registers the command on the ``rayrec`` parser; ``run`` executes it and returns the
exit code. Bad input prints one line on stderr and returns 2 (the ``rayrec`` command does that for
:class:`~rayrec.contracts.errors.SpecError`); an endpoint that fails during the run, 1.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from rayrec.contracts.errors import SpecError
from rayrec.contracts.files import atomic_write_text
from rayrec.loop.traffic import (
    METRICS,
    MODES,
    SEED_LIMIT,
    TrafficError,
    TrafficFailed,
    TrafficOptions,
    run_traffic,
)

__all__ = ["REPORT_FILE", "USERS_FILE", "add_parser", "read_api_key", "run"]

REPORT_FILE = "traffic.json"
"""``--out DIR/traffic.json``: the report (``--json`` prints the same, without ``per_user``)."""
USERS_FILE = "users.csv"
"""``--out DIR/users.csv``: one row per user lifetime (id, arm, version, outcomes, requests)."""
_USER_COLUMNS = ("user_id", "arm", "version", "mixed", *METRICS, "steps", "requests")


def _int_in(lo: int, hi: int | None = None) -> Any:
    """An argparse type: an integer in [lo, hi), naming what is allowed otherwise."""
    what = f"an integer >= {lo}" if hi is None else f"an integer in [{lo}, {hi})"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lo or (hi is not None and value >= hi):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``traffic`` to the ``rayrec`` subcommands."""
    p = subparsers.add_parser(
        "traffic", help="simulated users against a live endpoint; A/B comparison of its arms"
    )
    p.add_argument("--url", required=True, help="the rayrec endpoint, e.g. http://127.0.0.1:8000")
    p.add_argument("--env", type=Path, required=True, help="env spec of the served world")
    p.add_argument("--users", type=_int_in(1), required=True, help="user lifetimes to play")
    p.add_argument(
        "--concurrency", type=_int_in(1), default=16, help="requests in flight (default 16)"
    )
    p.add_argument(
        "--seed", type=_int_in(0, SEED_LIMIT), default=0, help="users, dynamics (default 0)"
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="sample",
        help="every request's mode: sample (the policy's distribution; default) or greedy",
    )
    p.add_argument("--out", type=Path, help="write DIR/traffic.json and DIR/users.csv")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--api-key-file", type=Path, help="file with the service's API key")
    p.set_defaults(handler=run)
    return p


def read_api_key(path: Path | None) -> str | None:
    """The key in ``--api-key-file`` (None without one); a bad file is one line, exit 2."""
    if path is None:
        return None
    try:
        key = path.read_text().strip()
    except OSError as e:
        raise TrafficError(f"--api-key-file {path}: cannot read it ({e.strerror})") from None
    if not key:
        raise TrafficError(f"--api-key-file {path}: the file is empty")
    return key


def _env_config(path: Path) -> Any:
    from rayrec.sim import SimConfig
    from rayrec.specs import EnvSpec, load_yaml

    env = EnvSpec.from_dict(load_yaml(path), str(path))
    if not isinstance(env.config, SimConfig):
        raise TrafficError(
            f"--env {path}: traffic plays session users; {env.id} is not a session env"
        )
    return env.config


class _Bar:
    """A rich progress bar on a terminal's stderr; nothing with ``--quiet`` or off a terminal."""

    def __init__(self, total: int, quiet: bool) -> None:
        self._bar = None
        if sys.stderr.isatty() and not quiet:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress(
                "users",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._task = self._bar.add_task("traffic", total=total)
            self._bar.start()

    def update(self, done: int, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _users_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_USER_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: row[c] for c in _USER_COLUMNS} for row in rows)
    return out.getvalue()


def _ci(value: dict[str, Any]) -> str:
    if value["low"] is None:
        return f"{value['mean']:.3f}"
    return f"{value['mean']:.3f} [{value['low']:.3f}, {value['high']:.3f}]"


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=True, header_style="bold")
    for column in ("arm", "version", "users", *(f"{m} per user (95% CI)" for m in METRICS)):
        table.add_column(column, justify="left" if column in ("arm", "version") else "right")
    for arm in report["arms"]:
        table.add_row(
            arm["arm"], arm["version"], str(arm["users"]), *(_ci(arm[m]) for m in METRICS)
        )
    Console(width=140).print(table)
    diff = report["difference"]
    if diff is None:
        print("no difference: it needs two arms with at least 2 users each")
    else:
        for m in METRICS:
            d = diff[m]
            print(
                f"{diff['arms']} {m}: {d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] "
                f"(95% CI, Welch t), p = {d['p_value']:.3g}"
                + ("  significant" if d["significant"] else "")
                + f"; always-valid p = {d['always_valid_p']:.3g}"
            )
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(
        f"{report['users']} users, {report['requests']} requests, {report['feedback']} feedback "
        f"events in {report['elapsed_s']:.1f} s"
        + (
            f"; {report['mixed_users']} users served by more than one version (left out)"
            if report["mixed_users"]
            else ""
        )
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``rayrec traffic``; returns the exit code."""
    options = TrafficOptions(
        url=args.url.rstrip("/"),
        users=args.users,
        concurrency=args.concurrency,
        seed=args.seed,
        api_key=read_api_key(args.api_key_file),
        mode=args.mode,
    )
    config = _env_config(args.env)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise SpecError(f"--out {args.out}: not a folder")
    bar = _Bar(args.users, args.quiet)
    try:
        report = run_traffic(config, options, bar.update)
    except TrafficFailed as e:
        print(f"rayrec: error: {e}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    report = {"env": str(args.env), **report}
    rows = report.pop("per_user")
    if args.out is not None:
        atomic_write_text(args.out / USERS_FILE, _users_csv(rows))
        atomic_write_text(args.out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0
