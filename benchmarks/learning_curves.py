"""Learning curves of kept runs: the argmax policy's return over env steps, one panel per preset.

Each run folder (``benchmarks/compare_algorithms.py --keep DIR`` keeps them as
``DIR/LABEL-seedN``) holds ``metrics.jsonl`` (env steps per iteration) and ``results.json``, whose
``selection.history`` is the return of the greedy (argmax) policy on the validation users at every
checkpoint check (``evaluation.select_every``). Those points, against the env steps sampled by
then, are the curve; one line per seed. Horizontal lines: the baselines of ``results.json``
(greedy, heuristic, longterm) on the evaluation users. Validation and evaluation users differ, and
a curve's points are single checks of 500 users (about +-2.4 at 95%), so read the trend, not a
point.

    python benchmarks/learning_curves.py DIR [DIR ...] --out docs/learning_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINES = {"greedy": ":", "heuristic": "--", "longterm": "-."}


def read_run(folder: Path) -> tuple[list[tuple[int, float]], dict[str, float]]:
    """((env steps, validation return) points, baseline means) of one run folder."""
    results = json.loads((folder / "results.json").read_text())
    history = (results.get("selection") or {}).get("history") or []
    if not history:
        raise SystemExit(f"{folder}: no selection history (train with evaluation.select_every)")
    steps = {}
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line
        steps[row["iteration"]] = row["env_steps"]
    points = [(steps[it], ret) for it, ret in history if it in steps]
    base = {k: v["return_mean"] for k, v in results.get("baselines", {}).items() if k in BASELINES}
    return points, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="run folders, or folders of them")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "learning_curves.png")
    args = parser.parse_args()
    runs: list[Path] = []
    for folder in args.folders:
        if (folder / "results.json").is_file():
            runs.append(folder)
        else:
            runs.extend(sorted(p.parent for p in folder.glob("*/results.json")))
    if not runs:
        parser.error("no run folders (each needs results.json and metrics.jsonl)")
    by_preset: dict[str, list[tuple[str, list[tuple[int, float]]]]] = defaultdict(list)
    baselines: dict[str, float] = {}
    for run in runs:
        points, base = read_run(run)
        label, _, seed = run.name.rpartition("-seed")
        by_preset[label or run.name].append((seed or "?", points))
        baselines = baselines or base

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(by_preset), figsize=(5 * len(by_preset), 4), squeeze=False, sharey=True
    )
    for ax, (preset, lines) in zip(axes[0], sorted(by_preset.items()), strict=True):
        for seed, points in lines:
            xs, ys = zip(*points, strict=True) if points else ((), ())
            ax.plot([x / 1e6 for x in xs], ys, marker=".", label=f"seed {seed}")
        for name, style in BASELINES.items():
            if name in baselines:
                ax.axhline(baselines[name], color="grey", linestyle=style, label=name)
        ax.set_title(preset)
        ax.set_xlabel("env steps (millions)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("argmax return, 500 validation users")
    axes[0][-1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(runs)} runs, {len(by_preset)} presets)", file=sys.stderr)


if __name__ == "__main__":
    main()
