"""Off-policy estimates of Bernoulli TS on the Open Bandit Dataset sample, against the truth.

For each campaign (all, men, women) the data is the campaign's *random*-policy log (10,000 slot
rows); the evaluation policy is Bernoulli Thompson Sampling with the ZOZOTOWN production priors,
its slot-level action distribution from 100,000 seeded Monte Carlo draws; the ground truth is the
on-policy CTR of the same campaign's *bts* log. Every step estimator of ``rayrec.ope`` is run with
the default settings of ``rayrec ope`` (seed 0, 1,000 bootstrap replicates, 2-fold cross-fitted
ridge reward model, Switch-DR tau = 10), i.e. what ``rayrec ope --data obd:C --policy bts``
prints. Relative error = |estimate - truth| / truth.

Data: ZOZO, Inc.; Saito et al. 2021, "Open Bandit Dataset and Pipeline", CC BY 4.0.
Needs ``make data`` (or ``rayrec data fetch obd``) first.

    python benchmarks/ope_obd.py [--seed S] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rayrec.datasets import CAMPAIGNS
from rayrec.ope import EstimatorConfig, estimate_step
from rayrec.ope.obd import obd_ground_truth, obd_step_log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()
    config = EstimatorConfig(seed=args.seed)
    lines = [
        "| campaign | estimator | estimate | 95% CI | ESS | relative error |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for campaign in CAMPAIGNS:
        start = time.perf_counter()
        log = obd_step_log(campaign, "bts", seed=args.seed)
        truth = obd_ground_truth(campaign, "bts")
        estimates = estimate_step(log, config=config)
        lines.append(f"| {campaign} | bts on-policy CTR (truth) | {truth:.5f} | | | |")
        for e in estimates.values():
            rel = abs(e.value - truth) / truth
            lines.append(
                f"| {campaign} | {e.name} | {e.value:.5f} | [{e.ci95[0]:.5f}, {e.ci95[1]:.5f}] "
                f"| {e.ess:.0f} | {rel:.3f} |"
            )
        print(f"{campaign}: {time.perf_counter() - start:.1f} s", flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")


if __name__ == "__main__":
    main()
