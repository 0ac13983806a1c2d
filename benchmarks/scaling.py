"""How each simulator's cost and memory grow with the size of the device.

    python benchmarks/scaling.py            # every size, writes the "scaling" section
    python benchmarks/scaling.py --quick    # the smallest sizes, prints only
    python benchmarks/scaling.py --report-only   # re-render the section from the saved runs

Each machine's run is kept (``results/scaling/simulators.json``): a batching ratio depends on
the processor, so the targets are reported for every machine measured; a re-run on the same
machine replaces that machine's run.

For each device family and size (MZI 16 / 32 / 64 modes, the two-mesh hybrid, MRR networks up
to the paper's LeNet-5 head and beyond, crossbars, the diffractive network at 32 / 64 / 128 px),
in a fresh process with readout noise and drift at their defaults and ``B = 256`` inputs:

- one ``query_many`` of ``K`` settings, one of a single setting and a loop of ``K`` single
  ``query`` calls, interleaved over rounds; "per setting" is ``(t(K) - t(1)) / (K - 1)``, the
  speed-up ``t(loop) / t(K)`` (medians of per-round values);
- peak memory of the ``K``-setting call: the growth of the process's peak resident set over
  what building the device and one single-setting call already used, next to the device's own
  estimate (``K x bytes_per_setting``, the bound ``query_many`` chunks by);
- the growth exponent: the slope of log(per-setting time) against log(controls) per family
  (least squares over its sizes), so that the cost of another size can be predicted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, write_section

from blacksat.devices import DEVICES

B = 256
#: (family, registry name, constructor arguments, size label, K)
CONFIGS: list[tuple[str, str, dict[str, Any], str, int]] = [
    ("MZI mesh", "mzi", {"n_modes": 16}, "16 modes", 64),
    ("MZI mesh", "mzi", {"n_modes": 32}, "32 modes", 64),
    ("MZI mesh", "mzi", {"n_modes": 64}, "64 modes", 64),
    ("MZI hybrid", "mzi-hybrid", {"n_modes": 16}, "2 x 16 modes", 64),
    ("MZI hybrid", "mzi-hybrid", {"n_modes": 32}, "2 x 32 modes", 64),
    ("MZI hybrid", "mzi-hybrid", {"n_modes": 64}, "2 x 64 modes", 64),
    ("MRR network", "mrr", {"layer_sizes": (64, 32, 10)}, "64-32-10", 64),
    ("MRR network", "mrr", {"layer_sizes": (120, 84, 10)}, "120-84-10 (LeNet-5 head)", 64),
    ("MRR network", "mrr", {"layer_sizes": (400, 120, 84, 10)}, "400-120-84-10", 64),
    ("crossbar", "crossbar", {"layer_sizes": (16, 10)}, "16-10", 64),
    ("crossbar", "crossbar", {"layer_sizes": (64, 32, 10)}, "64-32-10", 64),
    ("crossbar", "crossbar", {"layer_sizes": (400, 120, 84, 10)}, "400-120-84-10", 64),
    ("diffractive", "diffractive", {"n": 32}, "32 x 32 px", 16),
    ("diffractive", "diffractive", {"n": 64}, "64 x 64 px", 16),
    ("diffractive", "diffractive", {"n": 128}, "128 x 128 px", 16),
]
#: the issue's targets: (registry name, size label, minimum speed-up of query_many over a loop)
TARGETS = [("mzi", "64 modes", 8.0), ("diffractive", "128 x 128 px", 2.0)]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _time(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure(name: str, kwargs: dict[str, Any], k: int, rounds: int, min_seconds: float) -> dict:
    """One configuration, measured in this (fresh) process."""
    import torch

    torch.set_num_threads(2)
    dev = DEVICES[name](**kwargs)
    rng = np.random.default_rng(0)
    thetas = dev.space.sample(rng, k)
    x = rng.uniform(0, 1, (B, *dev.input_shape))
    dev.query_many(thetas[:1], x)  # warm-up of the single-setting path
    base = _peak_mb()
    t_first = _time(lambda: dev.query_many(thetas, x))  # the first K call sets the peak
    peak = _peak_mb() - base
    t_k, t_1, t_loop = [], [], []
    while len(t_k) < rounds or sum(t_k) + sum(t_1) + sum(t_loop) < min_seconds:
        t_k.append(_time(lambda: dev.query_many(thetas, x)))
        t_1.append(_time(lambda: dev.query_many(thetas[:1], x)))
        t_loop.append(_time(lambda: [dev.query(t, x) for t in thetas]))
    per = [(a - c) / (k - 1) for a, c in zip(t_k, t_1, strict=True)]
    speed = [c / a for a, c in zip(t_k, t_loop, strict=True)]
    return {
        "controls": dev.space.dim,
        "K": k,
        "B": B,
        "rounds": len(t_k),
        "t_k_s": float(np.median(t_k)),
        "t_1_s": float(np.median(t_1)),
        "t_loop_s": float(np.median(t_loop)),
        "t_first_k_s": t_first,
        "per_setting_ms": 1e3 * float(np.median(per)),
        "speedup": float(np.median(speed)),
        "speedup_range": [float(np.min(speed)), float(np.max(speed))],
        "peak_mb": peak,
        "estimate_mb": k * dev.bytes_per_setting(B) / 2**20,
        "chunks": len(dev._chunks(k, B)),
    }


def _measure_in(queue: Any, *args: Any) -> None:
    queue.put(measure(*args))


def growth(rows: list[dict]) -> dict[str, float]:
    """Per family: the least-squares slope of log(per-setting ms) on log(controls)."""
    out = {}
    for fam in dict.fromkeys(r["family"] for r in rows):
        pts = [(r["controls"], r["per_setting_ms"]) for r in rows if r["family"] == fam]
        pts = [(d, t) for d, t in pts if t > 0]
        if len(pts) >= 2:
            d, t = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
            out[fam] = float(np.polyfit(d, t, 1)[0])
    return out


#: the machine of the first run, whose file predates recording it (its section said so)
FIRST_MACHINE = "x86_64, 2 CPU cores, torch 2.13.0+cpu (2 threads), Python 3.11.7"


def load_runs(path: Path) -> list[dict]:
    """Every recorded run, oldest first: ``[{"machine", "rows"}, ...]``. A file written before
    runs were kept per machine (a bare list of rows) is the first machine's run."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if isinstance(data, list):
        return [{"machine": FIRST_MACHINE, "rows": data}]
    return list(data["runs"])


def section(rows: list[dict], quick: bool, runs: list[dict] | None = None) -> str:
    """The section: ``rows`` (this run) in full; the targets for every run in ``runs`` (each
    machine's run, this one last)."""
    runs = runs if runs is not None else [{"machine": machine(), "rows": rows}]
    cmd = "python benchmarks/scaling.py" + (" --quick" if quick else "")
    lines = [
        "## Scaling: simulator cost and memory vs device size",
        "",
        f"Command: `{cmd}` (B = {B} inputs; K = 64 settings, 16 for the diffractive network; "
        "each configuration in a fresh process with 2 torch threads; readout noise and drift at "
        "their defaults; times are medians of interleaved rounds). Machine: "
        f"{runs[-1]['machine']}.",
        "",
        "| family | size | controls | K | `query_many` K (ms) | one setting (ms) | loop of K (ms) "
        "| per additional setting (ms) | speed-up vs loop (min..max) | peak memory of the K "
        "call (MB) | estimate (MB) | chunks |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lo, hi = r["speedup_range"]
        lines.append(
            f"| {r['family']} | {r['size']} | {r['controls']} | {r['K']} | {1e3 * r['t_k_s']:.1f} "
            f"| {1e3 * r['t_1_s']:.2f} | {1e3 * r['t_loop_s']:.1f} | {r['per_setting_ms']:.3f} "
            f"| {r['speedup']:.1f}x ({lo:.1f}..{hi:.1f}) | {r['peak_mb']:.0f} "
            f"| {r['estimate_mb']:.0f} | {r['chunks']} |"
        )
    lines += [
        "",
        "Growth of the per-setting cost with the number of controls d (slope of log time on "
        "log d; 1 = linear):",
        "",
        "| family | exponent |",
        "| --- | ---: |",
    ]
    for fam, slope in growth(rows).items():
        lines.append(f"| {fam} | {slope:.2f} |")
    lines += [
        "",
        "Targets (64-mode MZI and 128 px diffractive network, K x B vectorized vs a loop), on "
        "every machine this script has run on (the table above is the last):",
        "",
    ]
    for name, size, need in TARGETS:
        for run in runs:
            hit = [r for r in run["rows"] if r["name"] == name and r["size"] == size]
            where = run["machine"]
            if hit:
                got = hit[0]["speedup"]
                verdict = "met" if got >= need else f"not met ({need - got:.1f}x short)"
                lines.append(
                    f"- {name} {size} on {where}: >= {need:g}x; measured {got:.1f}x "
                    f"-> **{verdict}**"
                )
            else:
                lines.append(f"- {name} {size} on {where}: >= {need:g}x; not measured")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smallest sizes, few rounds; prints")
    ap.add_argument(
        "--report-only", action="store_true", help="re-render the section from the saved runs"
    )
    args = ap.parse_args(argv)
    path = ROOT / "benchmarks" / "results" / "scaling" / "simulators.json"
    if args.report_only:
        runs = load_runs(path)
        if not runs:
            raise SystemExit(f"no saved runs in {path.relative_to(ROOT)}; run the script first")
        write_section("scaling", section(runs[-1]["rows"], False, runs))
        return
    smallest = [c for i, c in enumerate(CONFIGS) if c[0] not in {p[0] for p in CONFIGS[:i]}]
    configs = smallest if args.quick else CONFIGS
    ctx = multiprocessing.get_context("spawn")
    rows = []
    for fam, name, kw, size, k in configs:
        queue = ctx.Queue()
        rounds, secs = (2, 0.0) if args.quick else (5, 6.0)
        proc = ctx.Process(target=_measure_in, args=(queue, name, kw, k, rounds, secs))
        proc.start()
        res = queue.get()
        proc.join()
        row = {"family": fam, "name": name, "size": size, "kwargs": kw, **res}
        rows.append(row)
        print(
            json.dumps(
                {k: row[k] for k in ("name", "size", "per_setting_ms", "speedup", "peak_mb")}
            )
        )
    if args.quick:
        print(section(rows, args.quick))
        return
    here = machine()
    # one run per machine: a re-run on the same machine replaces its run, others are kept
    runs = [r for r in load_runs(path) if r["machine"] != here] + [{"machine": here, "rows": rows}]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1))
    write_section("scaling", section(rows, args.quick, runs))
    print("wrote the scaling section of BENCHMARKS.md")


if __name__ == "__main__":
    main()
