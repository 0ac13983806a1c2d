"""CPU / GPU agreement and speed of the simulators and of a training step, in one run.

    python benchmarks/gpu.py            # needs a CUDA device; writes the "gpu" section
    python benchmarks/gpu.py --check    # agreement only, small sizes, prints (no timing)

Without a CUDA device it says so and exits 0 (``--require`` makes that an error). With one:

- **agreement**: the same chip (same seed, float64, noise and drift on) built on the CPU and on
  the GPU answers the same queries; the largest difference of the readings, relative to their
  scale, and of the exact model's gradient;
- **speed**: ``query_many`` (K settings x B = 256 inputs) and one training step (backprop
  through the exact model, batch 256, float32: the white-box / autograd path) on 2 CPU threads
  and on the GPU, as ratios measured in this one run (medians of interleaved rounds).

The issue's target: a 64-mode MZI training step >= 10x faster on the GPU than on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

from blacksat.devices import DEVICES

B = 256
#: (registry name, constructor arguments, label, K)
SIZES = [
    ("mzi", {"n_modes": 16}, "MZI 16 modes", 64),
    ("mzi", {"n_modes": 64}, "MZI 64 modes", 64),
    ("mrr", {"layer_sizes": (120, 84, 10)}, "MRR 120-84-10", 64),
    ("diffractive", {"n": 64}, "diffractive 64 px", 16),
    ("diffractive", {"n": 128}, "diffractive 128 px", 16),
]
TARGET_STEP = 10.0
#: the accelerator compared with the CPU (the tests run the same code with "cpu" here)
ACCEL = "cuda"


def _median_time(fn: Any, rounds: int) -> float:
    fn()  # warm-up (kernels, caches)
    ts = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def agreement(name: str, kw: dict[str, Any]) -> dict[str, float]:
    """Largest relative difference of readings and of the exact model's gradient."""
    args = {**kw, "dtype": "float64", "seed": 3}
    cpu, gpu = DEVICES[name](**args), DEVICES[name](**args, torch_device=ACCEL)
    rng = np.random.default_rng(0)
    thetas = cpu.space.sample(rng, 4)
    x = rng.uniform(0, 1, (32, *cpu.input_shape))
    a, b = cpu.query_many(thetas, x), gpu.query_many(thetas, x)
    scale = float(np.max(np.abs(a))) or 1.0
    grads = []
    for dev in (cpu, gpu):
        theta = torch.as_tensor(thetas[0]).requires_grad_(True)
        dev.exact_model()(theta, torch.as_tensor(x)).square().sum().backward()
        grads.append(theta.grad.numpy())
    gscale = float(np.max(np.abs(grads[0]))) or 1.0
    return {
        "readings": float(np.max(np.abs(a - b))) / scale,
        "gradient": float(np.max(np.abs(grads[0] - grads[1]))) / gscale,
    }


def speed(name: str, kw: dict[str, Any], k: int, rounds: int) -> dict[str, float]:
    out: dict[str, float] = {}
    rng = np.random.default_rng(1)
    for where, tag in (("cpu", "cpu"), (ACCEL, "accel")):
        dev = DEVICES[name](**kw, torch_device=where)
        thetas = dev.space.sample(rng, k)
        x = rng.uniform(0, 1, (B, *dev.input_shape))
        out[f"query_{tag}_s"] = _median_time(lambda: dev.query_many(thetas, x), rounds)  # noqa: B023
        model = dev.exact_model()
        xt = torch.as_tensor(x, dtype=torch.float32)

        def step(model: Any = model, xt: torch.Tensor = xt, t0: np.ndarray = thetas[0]) -> None:
            theta = torch.as_tensor(t0, dtype=torch.float32).requires_grad_(True)
            model(theta, xt).square().mean().backward()

        out[f"step_{tag}_s"] = _median_time(step, rounds)
    out["query_ratio"] = out["query_cpu_s"] / out["query_accel_s"]
    out["step_ratio"] = out["step_cpu_s"] / out["step_accel_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--check", action="store_true", help="agreement on small sizes only")
    ap.add_argument("--require", action="store_true", help="fail without a CUDA device")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device here: nothing measured (the CPU path is what the tests check)")
        return 1 if args.require else 0
    torch.set_num_threads(2)
    sizes = SIZES[:1] + SIZES[3:4] if args.check else SIZES
    rows = []
    for name, kw, label, k in sizes:
        row = {"label": label, **agreement(name, kw)}
        if not args.check:
            row.update(speed(name, kw, k, args.rounds))
        rows.append(row)
        print(row, flush=True)
    if args.check:
        return 0
    gpu_name = torch.cuda.get_device_name(0)
    lines = [
        "## GPU: agreement with the CPU and speed",
        "",
        f"Command: `python benchmarks/gpu.py` (B = {B}; K = 64 settings, 16 for the diffractive "
        f"network; medians of {args.rounds} rounds; CPU: 2 torch threads). GPU: {gpu_name}. "
        f"Machine: {machine()}.",
        "",
        "| device | readings: max relative difference | gradient: max relative difference "
        "| `query_many` CPU (ms) | GPU (ms) | ratio | training step CPU (ms) | GPU (ms) | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['readings']:.1e} | {r['gradient']:.1e} "
            f"| {1e3 * r['query_cpu_s']:.1f} | {1e3 * r['query_accel_s']:.1f} "
            f"| {r['query_ratio']:.1f}x | {1e3 * r['step_cpu_s']:.1f} "
            f"| {1e3 * r['step_accel_s']:.1f} | {r['step_ratio']:.1f}x |"
        )
    mzi64 = next(r for r in rows if r["label"] == "MZI 64 modes")
    met = "met" if mzi64["step_ratio"] >= TARGET_STEP else "not met"
    lines += [
        "",
        f"Target: a 64-mode MZI training step >= {TARGET_STEP:g}x faster on the GPU; measured "
        f"{mzi64['step_ratio']:.1f}x -> **{met}**.",
    ]
    write_section("gpu", "\n".join(lines))
    print("wrote the gpu section of BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
