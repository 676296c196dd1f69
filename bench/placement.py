"""Benchmark: the placement planner against two greedy baselines and the integer-program optimum.

    .venv/bin/python bench/placement.py [--runs 3] [--ip-time-limit 20] [--seed 6]

Pure Python (no Django, no libvirt). For every instance (a host and a set of VMs, generated
from a seeded RNG, so the same every run) it places the VMs four ways on the capacity model of
``balancing.planner`` (see its docstring):

- the planner, ``balancing.planner.plan`` (timed: median of ``--runs`` runs);
- first-fit decreasing: VMs by vCPUs then memory, descending; each on the first cell (in id
  order) that fits, else spread over the fewest cells that fit, first such set in id order;
- a numad-style greedy: VMs by memory, descending; each on the fitting cell with the largest
  numad "magnitude" (free CPU x free memory); when no cell fits, cells are added in numad's
  order (magnitude / distance to the cell added last) until the VM fits;
- the optimum of an integer program (PuLP + its bundled CBC) on the instances small enough
  to solve: one binary per (VM, candidate cell set), the VM's vCPUs and memory split evenly
  over the set (``split_evenly``, whole cores for dedicated VMs, as the planner splits when an
  even split fits), capacity constraints per cell, objective = the remote term of ``score()``
  (computed by ``score()`` itself for each option) plus a tiny move penalty as tie-break.

All four results are ``balancing.planner.Assignment`` maps, judged by the same ``score()`` and
``validate()``. A lower bound of the remote term (every VM on its cheapest cell set as if
alone on the host) tells where the optimum is known without the IP: when an evenly split,
valid placement reaches it. The planner may also split a VM in proportion to the free room
(when no even split fits); such placements are outside the IP's model and can score below
its "optimum". Prints a markdown table (the README quotes it) and a summary line; progress
and every rejected plan's reasons go to stderr.

This file is the command line, the run loop and the table; the hosts, the capacity model, the
baselines, the integer program, the instances and the judging live in ``bench/planner_bench/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from balancing.planner import PlanError, plan  # noqa: E402
from bench.planner_bench.baselines import first_fit_decreasing, numad_greedy  # noqa: E402
from bench.planner_bench.capacity import Capacity  # noqa: E402
from bench.planner_bench.instances import instances  # noqa: E402
from bench.planner_bench.optimum import lower_bound, optimum  # noqa: E402
from bench.planner_bench.outcome import (  # noqa: E402
    Outcome,
    fmt_remote,
    judge,
    median_s,
    vs_optimum,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="planner runs per instance (median)")
    parser.add_argument("--ip-time-limit", type=float, default=20.0, help="seconds per IP")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--no-ip", action="store_true", help="skip the integer program")
    args = parser.parse_args()

    rows = []
    invalid = {"planner": 0, "FFD": 0, "numad": 0, "optimum": 0}
    pcts: list[float] = []
    abs_diffs: list[float] = []
    uneven: list[str] = []
    largest: set[str] = set()
    plan_times: list[tuple[float, str]] = []
    details = []
    for inst in instances(args.seed):
        cap = Capacity(inst.topology, inst.policy)
        try:
            seconds, result = median_s(
                lambda inst=inst: plan(inst.topology, inst.vms, inst.policy), args.runs
            )
            planner = judge(inst, result.assignments)
            plan_times.append((seconds, inst.name))
            plan_text = (
                f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
            )
        except NotImplementedError:
            planner, plan_text = Outcome(None, [], "not written"), "-"
        except PlanError as exc:
            planner, plan_text = Outcome(None, [f"{type(exc).__name__}: {exc}"], "error"), "-"
        ffd = judge(inst, first_fit_decreasing(cap, inst.vms))
        numad = judge(inst, numad_greedy(cap, inst.vms))
        bound = lower_bound(cap, inst.vms)
        ip_done = inst.solve_ip and not args.no_ip
        if ip_done:
            ip = optimum(cap, inst.vms, args.ip_time_limit)
            best = judge(inst, ip.assignments, ip.status)
            ip_note = (
                f"{ip.status}, {'all' if ip.exact else 'closest'} cell sets, "
                f"{ip.variables} variables, {ip.seconds:.1f} s"
            )
        else:
            ip, best, ip_note = None, Outcome(None, [], "-"), "not run"
        # The optimum (of the even-split model) is known when the IP proved it over every cell
        # set, or when a valid placement that splits evenly reaches the lower bound.
        valid = [
            o.score.remote
            for o in (planner, ffd, numad, best)
            if o.score and not o.invalid and not o.uneven
        ]
        found = min(valid, default=None)
        if ip and ip.exact and ip.status == "optimal" and best.score and not best.invalid:
            opt, opt_text = best.score.remote, f"{best.score.remote:.4f}"
        elif found is not None and found <= bound + 1e-9:
            opt, opt_text = found, f"{found:.4f} (= bound)"
        elif ip and ip.status.startswith("infeasible"):
            opt, opt_text = None, "no even split fits"
        else:
            opt = None
            opt_text = f"{bound:.4f}, {found:.4f}" if found is not None else f"≥ {bound:.4f}"
        labelled = (("planner", planner), ("FFD", ffd), ("numad", numad), ("optimum", best))
        for label, o in labelled:
            if o.invalid:
                invalid[label] += 1
                details.append(f"{inst.name} / {label}: " + "; ".join(o.invalid[:3]))
        gap, pct, diff = vs_optimum(planner, opt)
        if pct is not None:
            pcts.append(pct)
        elif diff is not None:
            abs_diffs.append(diff)
        cells = len([c for c in inst.topology.cells if c.cpus])
        mem_only = len(inst.topology.cells) - cells
        one_cell = moves = "-"
        if planner.score:
            one_cell = str(planner.score.vms_on_one_cell)
            moves = str(planner.score.moves)
            if best.score:
                one_cell += f" / {best.score.vms_on_one_cell}"
                moves += f" / {best.score.moves}"
        rows.append(
            [
                inst.name,
                f"{cells}" + (f" + {mem_only}" if mem_only else ""),
                inst.counts,
                f"{100 * inst.fill:.0f} %",
                f"{inst.policy.cpu_overcommit:g}",
                fmt_remote(planner) + (" †" if planner.uneven else ""),
                fmt_remote(ffd),
                fmt_remote(numad),
                opt_text,
                gap,
                moves,
                one_cell,
                plan_text,
            ]
        )
        if planner.uneven:
            uneven.append(f"{inst.name}: {planner.uneven}")
        if len(inst.vms) >= 500 and len(inst.topology.cells) >= 10:
            largest.add(inst.name)
        print(f"  {inst.name}, {inst.counts} VMs: IP {ip_note}; bound {bound:.4f}", file=sys.stderr)

    header = [
        "host",
        "cells",
        "VMs (big/ded./locked)",
        "memory fill",
        "CPU o/c",
        "remote: planner",
        "FFD",
        "numad",
        "optimum",
        "planner vs optimum",
        "moves (planner / opt.)",
        "on one cell (planner / opt.)",
        "plan time",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    summary = []
    if pcts:
        summary.append(
            f"planner vs optimum on {len(pcts)} instances with a non-zero optimum: "
            f"mean {statistics.fmean(pcts):+.2f} %, max {max(pcts):+.2f} %"
        )
    if abs_diffs:
        summary.append(f"where the optimum is 0: max +{max(abs_diffs):.4f}")
    if plan_times:
        worst, where = max(plan_times)
        summary.append(f"max planning time {worst * 1000:.0f} ms ({where})")
        big = [t for t, name in plan_times if name in largest]
        if big:
            summary.append(f"500 VMs x 10 cells: {max(big) * 1000:.0f} ms at most")
    summary.append(
        "invalid plans: " + ", ".join(f"{label} {count}" for label, count in invalid.items())
    )
    print("; ".join(summary) + ".")
    print(
        "✗ = validate() rejects the plan; † = the planner split some VMs in proportion to the "
        "free room, outside the even-split model of the optimum and the bound "
        f"({', '.join(uneven) or 'none'}); a, b = lower bound, best even-split placement found."
    )
    for line in details:
        print(f"  ✗ {line}", file=sys.stderr)


if __name__ == "__main__":
    main()
