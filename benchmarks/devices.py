"""Device throughput: K x B vectorized evaluation vs a per-setting loop, as ratios in one run.

    python benchmarks/devices.py            # default sizes, writes BENCHMARKS.md
    python benchmarks/devices.py --quick    # fewer repetitions, no BENCHMARKS.md update

For each device (default configuration, readout noise and drift at their defaults) and ``B``
inputs: the time of one ``query_many`` with ``K`` settings, of one with a single setting, and of
``K`` single ``query`` calls. "Per additional setting" is ``(t(K) - t(1)) / (K - 1)``; the
speed-up is ``t(loop of K) / t(K)``. Medians over repetitions; spread = min..max.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import ROOT, machine, write_section

from blacksat.devices import DEVICES


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _stats(ts: list[float]) -> tuple[float, float, float]:
    return float(np.median(ts)), float(np.min(ts)), float(np.max(ts))


def bench_device(name: str, k: int, b: int, reps: int, min_seconds: float = 6.0) -> dict:
    """Interleaved timings (K settings, one setting, loop of K) so that a slow phase of the
    machine hits all three alike; ratios are taken per round, then their median."""
    dev = DEVICES[name]()
    rng = np.random.default_rng(0)
    thetas = dev.space.sample(rng, k)
    x = rng.uniform(0, 1, (b, *dev.input_shape))
    many = lambda: dev.query_many(thetas, x)  # noqa: E731
    one = lambda: dev.query_many(thetas[:1], x)  # noqa: E731
    loop = lambda: [dev.query(t, x) for t in thetas]  # noqa: E731
    many(), one(), loop()  # warm-up
    t_k, t_1, t_loop = [], [], []
    while len(t_k) < reps or sum(t_k) + sum(t_1) + sum(t_loop) < min_seconds:
        t_k.append(_time(many))
        t_1.append(_time(one))
        t_loop.append(_time(loop))
    per = [(a - c) / (k - 1) * 1e6 for a, c in zip(t_k, t_1, strict=True)]
    speed = [c / a for a, c in zip(t_k, t_loop, strict=True)]
    return {
        "device": name,
        "controls": dev.space.dim,
        "K": k,
        "B": b,
        "rounds": len(t_k),
        "t_query_many_s": _stats(t_k),
        "t_single_s": _stats(t_1),
        "t_loop_s": _stats(t_loop),
        "us_per_additional_setting": float(np.median(per)),
        "us_per_additional_setting_iqr": [float(v) for v in np.percentile(per, [25, 75])],
        "speedup_vs_loop": float(np.median(speed)),
        "speedup_vs_loop_iqr": [float(v) for v in np.percentile(speed, [25, 75])],
        "samples_per_s": k * b / float(np.median(t_k)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repetitions, BENCHMARKS.md untouched")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--b", type=int, default=256)
    args = ap.parse_args()
    reps = 3 if args.quick else 15
    # each device in a fresh process: large allocations of one device must not slow the next
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rows = pool.starmap(bench_device, [(n, args.k, args.b, reps) for n in sorted(DEVICES)])
    for r in rows:
        tk, tl = r["t_query_many_s"][0] * 1e3, r["t_loop_s"][0] * 1e3
        print(
            f"{r['device']:12s} d={r['controls']:5d}  query_many {tk:8.2f} ms  loop {tl:8.2f} ms"
            f"  {r['us_per_additional_setting']:8.1f} us/setting  x{r['speedup_vs_loop']:.1f}"
        )
    if args.quick:
        return
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "devices.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    lines = [
        "## Devices: vectorized K x B evaluation",
        "",
        f"Command: `python benchmarks/devices.py` (K = {args.k} settings, B = {args.b} inputs, "
        f"interleaved rounds (>= {reps}, and >= 6 s per device), each device in a fresh "
        f"process; times are medians (min..max); per-setting cost and speed-up are medians of "
        f"per-round values (interquartile range). Machine: {machine()}.",
        "",
        "| device | controls | `query_many` K settings (ms) | one setting (ms) "
        "| loop of K `query` (ms) | us per additional setting | speed-up vs loop | samples / s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        tk, t1, tl = (r[k] for k in ("t_query_many_s", "t_single_s", "t_loop_s"))
        fmt = lambda t: f"{t[0] * 1e3:.2f} ({t[1] * 1e3:.2f}..{t[2] * 1e3:.2f})"  # noqa: E731
        iqr = lambda q: f"{q[0]:.3g}..{q[1]:.3g}"  # noqa: E731
        lines.append(
            f"| {r['device']} | {r['controls']} | {fmt(tk)} | {fmt(t1)} | {fmt(tl)} | "
            f"{r['us_per_additional_setting']:.1f} ({iqr(r['us_per_additional_setting_iqr'])}) | "
            f"{r['speedup_vs_loop']:.1f}x ({iqr(r['speedup_vs_loop_iqr'])}) | "
            f"{r['samples_per_s']:.3g} |"
        )
    mzi = next((r for r in rows if r["device"] == "mzi"), None)
    if mzi is not None:
        ok = mzi["us_per_additional_setting"] <= 60 and mzi["speedup_vs_loop"] >= 8
        lines += [
            "",
            f"Target for the 16-mode mesh (B = 256, K = 64): <= 60 us per additional setting and "
            f">= 8x faster than the loop. Measured: {mzi['us_per_additional_setting']:.1f} us, "
            f"{mzi['speedup_vs_loop']:.1f}x -> **{'met' if ok else 'NOT met'}**.",
        ]
    lines += ["", "Readout noise and drift are on at their defaults."]
    write_section("devices", "\n".join(lines))
    print("wrote BENCHMARKS.md")


if __name__ == "__main__":
    main()
