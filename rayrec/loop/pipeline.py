"""``make loop``: the closed loop of a recommender team, end to end, with rayrec's own commands.

::

    python -m rayrec.loop.pipeline --out runs/loop [--seed S] [sizes, see --help]

1. ``rayrec train`` A: PPO on ``envs/session.yaml`` for a short budget (yesterday's model).
2. ``rayrec serve`` A with an impression log and a propensity floor; ``rayrec traffic`` plays
   simulated users against it in ``sample`` mode (A's softmax mixed with uniform: logs that cover
   every candidate, as off-policy evaluation needs).
3. ``rayrec data from-served`` turns the served log into a training log; ``rayrec train --data``
   learns B offline from it (discrete CQL).
4. ``rayrec ope``: A's and B's greedy policies, estimated at step level on A's served log.
5. ``rayrec serve`` A and B split 50/50 by user; ``rayrec traffic`` in ``greedy`` mode: each arm's
   long-term return per user with its 95% CI, and B - A (Welch).
6. When B wins (B - A's interval above 0): ``rayrec serve`` A alone with traffic running, and
   after a warm-up ``rayrec rollout`` of B with its CTR guard; otherwise A stays.

It ends with one table (B's OPE estimate, both arms' measured values, the decision and what the
rollout did) and writes ``OUT/loop.json``; each command's output is in ``OUT/logs/``. Every step
is a ``rayrec`` command as a user would type it (``OUT/commands.txt`` lists them). Failures stop
the loop with the failing command and the end of its log (exit 1); bad arguments exit 2.
See docs/loop.md ("make loop").
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rayrec.contracts.files import atomic_write_text

__all__ = ["LoopFailed", "LoopOptions", "decide", "main", "run_loop"]

ROOT = Path(__file__).resolve().parents[2]
ENV = "envs/session.yaml"
# CQL with the inputs that made PPO reach the heuristic (docs/results.md, issue #22).
CQL_INPUTS = ("model.encoder=gated", "model.candidate_context=true", "model.relations=true")
OPE_ESTIMATORS = ("ipw", "snipw", "dr", "sndr")
HEADLINE = "sndr"
"""The OPE estimate the table shows (self-normalised DR: the best coverage in docs/ope.md)."""


ROLLOUTS = ("if-wins", "always", "never")


class LoopFailed(RuntimeError):
    """A step of the loop failed: the message names the command and ends with its log's tail."""


@dataclass(frozen=True)
class LoopOptions:
    """Sizes of one loop; the defaults run in about 15 minutes on 2 CPUs (docs/loop.md)."""

    out: Path
    seed: int = 0
    a_iterations: int = 15
    """PPO iterations of A (x 4,096 env steps): a model that has only begun to learn, so that
    the loop has something to improve on (the preset's own budget is 400)."""
    log_users: int = 1000
    """User lifetimes served by A for the log B learns from."""
    floor: float = 0.1
    """Propensity floor of A's served log (EPS-uniform mixed into its softmax)."""
    cql_iterations: int = 80
    ab_users: int = 800
    """User lifetimes of the A/B test (split 50/50)."""
    step_seconds: float = 30.0
    """Each rollout step (10%, 50%, 100% of users on B)."""
    warmup_seconds: float = 60.0
    """Traffic against A alone before the rollout starts: users are then at every stage of their
    lifetimes when B arrives, as on a live service. Without it every simulated user is at its
    first requests while the guard watches, where a long-term policy earns fewer clicks than a
    myopic one (docs/loop.md, "make loop")."""
    guard_min_clicks: int = 500
    """Feedback clicks each version needs before the guard compares their CTRs."""
    margin: float = 0.03
    """CTR B may lose to A during the rollout before the guard rolls it back."""
    rollout: str = "if-wins"
    """``if-wins`` (B is rolled out when it wins the A/B test), ``always`` (a drill of the rollout
    path whatever the verdict) or ``never``."""
    eval_users: int = 500
    """Users of each training run's own final evaluation (in the simulator, not the loop's)."""

    def __post_init__(self) -> None:
        for name in ("a_iterations", "log_users", "cql_iterations", "ab_users", "eval_users"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if not 0.0 < self.floor <= 1.0:
            raise ValueError(f"--floor ({self.floor}) must be in (0, 1]")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"--rollout {self.rollout!r}: one of {', '.join(ROLLOUTS)}")
        if not 0.0 <= self.margin <= 1.0:
            raise ValueError(f"--margin ({self.margin}) must be in [0, 1]")
        if self.warmup_seconds < 0:
            raise ValueError(f"--warmup-seconds ({self.warmup_seconds}) must be >= 0")
        if self.step_seconds <= 0:
            raise ValueError(f"--step-seconds ({self.step_seconds}) must be > 0")
        if not 0 <= self.seed < 2**31 - 2:
            raise ValueError(f"--seed ({self.seed}) must be in [0, 2^31 - 2)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Steps:
    """Runs ``rayrec`` commands, each with its output in ``logs/NAME.log``, and times them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.seconds: dict[str, float] = {}
        self._commands = out / "commands.txt"
        self._commands.write_text("")
        self._env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}

    def _argv(self, name: str, args: list[str]) -> list[str]:
        with self._commands.open("a") as f:
            f.write(f"# {name}\nrayrec {' '.join(args)}\n")
        return [sys.executable, "-m", "rayrec.cli", *args]

    def _tail(self, name: str) -> str:
        lines = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
        return "\n".join(lines[-15:])

    def run(self, name: str, args: list[str], ok: tuple[int, ...] = (0,)) -> str:
        """Run ``rayrec ARGS``; its stdout (stderr goes to the log too)."""
        say(f"{name}: rayrec {' '.join(args)}")
        began = time.perf_counter()
        with (self.logs / f"{name}.log").open("wb") as log:
            done = subprocess.run(
                self._argv(name, args),
                cwd=ROOT,
                env=self._env,
                stdout=subprocess.PIPE,
                stderr=log,
                check=False,
            )
            log.write(b"--- stdout ---\n" + done.stdout)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
        if done.returncode not in ok:
            raise LoopFailed(
                f"{name} exited {done.returncode}: rayrec {' '.join(args)}\n{self._tail(name)}"
            )
        return done.stdout.decode()

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        """``rayrec ARGS`` in the background (its own process group), output in the log."""
        say(f"{name}: rayrec {' '.join(args)} &")
        with (self.logs / f"{name}.log").open("wb") as log:
            return subprocess.Popen(
                self._argv(name, args),
                cwd=ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @contextlib.contextmanager
    def serving(self, name: str, args: list[str], port: int) -> Iterator[str]:
        """``rayrec serve ARGS --port PORT`` until the block ends (then Ctrl-C, as a user)."""
        began = time.perf_counter()
        proc = self.start(name, [*args, "--port", str(port)])
        listening = f"listening on http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 300
            while listening not in (self.logs / f"{name}.log").read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise LoopFailed(f"{name}: rayrec serve did not start\n{self._tail(name)}")
                time.sleep(0.5)
            say(f"{name}: serving on http://127.0.0.1:{port}")
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


def _stop(proc: subprocess.Popen[bytes], signum: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def say(line: str) -> None:
    sys.stderr.write(f"[loop {time.strftime('%H:%M:%S')}] {line}\n")
    sys.stderr.flush()


def per_slate(users_csv: Path, seed: int, n_boot: int = 2000) -> dict[str, dict[str, float]]:
    """Reward per slate of each arm (sum of returns / sum of requests over its users) with a 95%
    percentile bootstrap interval over users (users, not requests, are independent)."""
    rows: dict[str, list[tuple[float, float]]] = {}
    with users_csv.open() as f:
        for row in csv.DictReader(f):
            if row["mixed"] not in ("True", "true", "1"):
                rows.setdefault(row["arm"], []).append(
                    (float(row["return"]), float(row["requests"]))
                )
    rng = np.random.default_rng(seed)
    out = {}
    for arm, pairs in rows.items():
        values = np.array(pairs)
        picks = rng.integers(0, len(values), size=(n_boot, len(values)))
        boot = values[picks, 0].sum(axis=1) / np.maximum(values[picks, 1].sum(axis=1), 1.0)
        out[arm] = {
            "mean": float(values[:, 0].sum() / max(values[:, 1].sum(), 1.0)),
            "low": float(np.quantile(boot, 0.025)),
            "high": float(np.quantile(boot, 0.975)),
        }
    return out


def decide(ab: dict[str, Any]) -> tuple[bool, str]:
    """Roll B out when its return per user beats A's: B - A's 95% Welch interval above 0."""
    diff = (ab.get("difference") or {}).get("return")
    if diff is None:
        return False, "no A/B difference (an arm without users)"
    if diff["low"] > 0:
        return (
            True,
            f"B wins: B - A return {diff['estimate']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]",
        )
    if diff["high"] < 0:
        return (
            False,
            f"A wins: B - A return {diff['estimate']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}]",
        )
    return False, (
        f"no significant difference: B - A return {diff['estimate']:+.2f} "
        f"[{diff['low']:+.2f}, {diff['high']:+.2f}]; A stays"
    )


def run_loop(options: LoopOptions) -> dict[str, Any]:
    """Run the loop; the result that ``OUT/loop.json`` holds."""
    out = options.out.resolve()
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out {options.out}: exists and is not empty (the loop starts clean)")
    steps = _Steps(out)
    seed = str(options.seed)
    a_ckpt, b_ckpt = out / "a" / "checkpoints" / "final", out / "b" / "checkpoints" / "final"
    evaluation = ["--eval-users", str(options.eval_users), "--baselines", "heuristic", "--quiet"]
    steps.run("1-train-a", [
        "train", "--env", ENV, "--policy", "policies/ppo.yaml", "--seed", seed,
        "--iterations", str(options.a_iterations), "--out", str(out / "a"), *evaluation,
    ])  # fmt: skip
    port = _free_port()
    served = out / "served-a"
    with steps.serving("2-serve-a", [
        "serve", "--checkpoint", str(a_ckpt), "--log-dir", str(served),
        "--propensity-floor", str(options.floor),
    ], port) as url:  # fmt: skip
        steps.run("3-traffic-a", [
            "traffic", "--url", url, "--env", ENV, "--users", str(options.log_users),
            "--seed", seed, "--mode", "sample", "--out", str(out / "traffic-a"), "--quiet",
        ])  # fmt: skip
    logs = out / "logs-a"
    steps.run(
        "4-from-served", ["data", "from-served", str(served), "--env", ENV, "--out", str(logs)]
    )
    sets = [arg for item in CQL_INPUTS for arg in ("--set", item)]
    steps.run("5-train-b", [
        "train", "--env", ENV, "--policy", "policies/cql.yaml", "--data", str(logs), "--seed", seed,
        "--iterations", str(options.cql_iterations), "--out", str(out / "b"), *sets, *evaluation,
    ])  # fmt: skip
    ope = {}
    for arm, ckpt in (("A", a_ckpt), ("B", b_ckpt)):
        text = steps.run(f"6-ope-{arm.lower()}", [
            "ope", "--data", str(logs), "--policy", str(ckpt), "--mode", "greedy",
            "--estimators", ",".join(OPE_ESTIMATORS), "--seed", seed, "--json",
        ])  # fmt: skip
        ope[arm] = json.loads(text)["estimates"]
    with steps.serving("7-serve-ab", [
        "serve", "--checkpoint", str(a_ckpt), "--ab", str(b_ckpt), "--split", "0.5",
        "--log-dir", str(out / "served-ab"),
    ], port) as url:  # fmt: skip
        steps.run("8-traffic-ab", [
            "traffic", "--url", url, "--env", ENV, "--users", str(options.ab_users),
            "--seed", str(options.seed + 1), "--mode", "greedy", "--out", str(out / "traffic-ab"),
            "--quiet",
        ])  # fmt: skip
    ab = json.loads((out / "traffic-ab" / "traffic.json").read_text())
    slates = per_slate(out / "traffic-ab" / "users.csv", options.seed)
    roll_out, why = decide(ab)
    say(f"decision: {why}")
    rollout = None
    if options.rollout == "always" or (roll_out and options.rollout == "if-wins"):
        if not roll_out:
            say("--rollout always: rolling B out anyway (a drill of the rollout path)")
        rollout = _rollout(steps, options, a_ckpt, b_ckpt, port)
    return {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "ope": ope,
        "ab": {"arms": ab["arms"], "difference": ab["difference"], "per_slate": slates},
        "decision": {"roll_out": roll_out, "why": why, "rollout": options.rollout},
        "rollout": rollout,
        "seconds": {k: round(v, 1) for k, v in steps.seconds.items()},
    }


def _rollout(
    steps: _Steps, options: LoopOptions, a_ckpt: Path, b_ckpt: Path, port: int
) -> dict[str, Any]:
    """Serve A alone, run traffic, and roll B out onto the running service."""
    users = max(options.ab_users, 400)  # x 4: more than the warm-up and the three steps need
    with steps.serving("9-serve-a", ["serve", "--checkpoint", str(a_ckpt)], port) as url:
        traffic = steps.start("10-traffic-rollout", [
            "traffic", "--url", url, "--env", ENV, "--users", str(4 * users),
            "--seed", str(options.seed + 2), "--mode", "greedy", "--quiet",
        ])  # fmt: skip
        try:
            say(f"10-traffic-rollout: {options.warmup_seconds:g} s of traffic before the rollout")
            time.sleep(options.warmup_seconds)
            if traffic.poll() is not None:
                raise LoopFailed(
                    f"10-traffic-rollout exited {traffic.returncode} before the rollout"
                )
            text = steps.run("11-rollout", [
                "rollout", "--url", url, "--checkpoint", str(b_ckpt), "--ramp", "10,50,100",
                "--step-seconds", str(options.step_seconds),
                "--guard-min-clicks", str(options.guard_min_clicks),
                "--margin", str(options.margin), "--json",
            ], ok=(0, 1))  # fmt: skip
        finally:
            _stop(traffic)
    return json.loads(text)


def _ci(m: dict[str, Any], digits: int = 2) -> str:
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def table(result: dict[str, Any]) -> str:
    """The loop's one table (markdown, as docs/loop.md shows it)."""
    arms = {arm["arm"]: arm for arm in result["ab"]["arms"]}
    slates = result["ab"]["per_slate"]
    ope = {arm: result["ope"][arm][HEADLINE] for arm in ("A", "B")}

    def est(e: dict[str, Any]) -> str:
        return f"{e['value']:.4f} [{e['ci95'][0]:.4f}, {e['ci95'][1]:.4f}]"

    rows = [
        ("OPE on A's served log: reward per slate (SNDR, 95% CI)", est(ope["A"]), est(ope["B"])),
        (
            "A/B: reward per slate (95% bootstrap CI over users)",
            *(_ci(slates[a], 4) if a in slates else "-" for a in ("A", "B")),
        ),
        (
            "A/B: return per user (95% CI)",
            *(_ci(arms[a]["return"]) if a in arms else "-" for a in ("A", "B")),
        ),
        ("A/B: users", *(str(arms[a]["users"]) if a in arms else "0" for a in ("A", "B"))),
    ]
    lines = ["| | A (PPO) | B (CQL from A's served log) |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {a} | {b} |" for name, a, b in rows]
    diff = (result["ab"]["difference"] or {}).get("return")
    if diff is not None:
        lines.append(
            f"| A/B: B - A return (Welch 95% CI, p) | "
            f"{diff['estimate']:+.2f} [{diff['low']:+.2f}, {diff['high']:+.2f}], "
            f"p = {diff['p_value']:.3g} | |"
        )
    lines.append(f"| decision | {result['decision']['why']} | |")
    rollout = result["rollout"]
    if rollout is not None:
        what = rollout["outcome"] + (f": {rollout['reason']}" if rollout["reason"] else "")
        if not result["decision"]["roll_out"]:
            what += " (--rollout always: a drill, not the decision)"
        lines.append(f"| rollout of B (10%, 50%, 100%) | {what} | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    defaults = LoopOptions(out=Path("runs/loop"))
    p = argparse.ArgumentParser(
        prog="python -m rayrec.loop.pipeline", description=__doc__.split("\n")[0]
    )
    p.add_argument(
        "--out", type=Path, default=defaults.out, help="run folder (must be new or empty)"
    )
    for name in ("seed", "a_iterations", "log_users", "cql_iterations", "ab_users",
                 "guard_min_clicks", "eval_users"):  # fmt: skip
        p.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    p.add_argument(
        "--floor", type=float, default=defaults.floor, help="propensity floor of A's log"
    )
    p.add_argument("--step-seconds", type=float, default=defaults.step_seconds)
    p.add_argument("--warmup-seconds", type=float, default=defaults.warmup_seconds)
    p.add_argument(
        "--rollout",
        default=defaults.rollout,
        help="if-wins (default): roll B out when it wins the A/B test; always: a drill; never",
    )
    p.add_argument("--margin", type=float, default=defaults.margin, help="rollout CTR margin")
    args = p.parse_args(argv)
    try:
        options = LoopOptions(**vars(args))
    except ValueError as e:
        p.error(str(e))  # exit 2
    began = time.perf_counter()
    try:
        result = run_loop(options)
    except ValueError as e:
        p.error(str(e))
    except LoopFailed as e:
        sys.stderr.write(f"rayrec loop: failed: {e}\n")
        return 1
    result["seconds"]["total"] = round(time.perf_counter() - began, 1)
    atomic_write_text(options.out / "loop.json", json.dumps(result, indent=2) + "\n")
    text = table(result)
    atomic_write_text(options.out / "loop.md", text + "\n")
    sys.stdout.write(text + "\n")
    sys.stdout.write(f"\n{result['seconds']['total'] / 60:.1f} minutes; {options.out}/loop.json\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
