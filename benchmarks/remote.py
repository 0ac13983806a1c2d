"""Remote devices: per-query overhead, a bounded load test and fuzzing counts, on loopback.

    python benchmarks/remote.py            # the reported run; writes its BENCHMARKS.md section
    python benchmarks/remote.py --quick    # a small run; prints only

The server is ``blacksat serve`` in its own process (as on a lab PC), bound to 127.0.0.1; the
client is :class:`~blacksat.remote.RemoteDevice` in this process. Both share this machine's
cores, so the figures are an upper bound on what a separate lab PC adds.

1. **Overhead** (16-mode ``MZIMesh``, K = 64 settings, B = 256 inputs per query): the time of
   ``MeteredDevice(chip).query_many`` in-process and of ``MeteredDevice(RemoteDevice(url))``
   on the same chip served by the other process, interleaved in each repetition; reported as
   the ratio remote / in-process of each repetition (mean +- sample std) and the absolute times.
   A one-setting, one-input query gives the fixed cost of a request.
2. **Load**: N clients (threads, each a pickled copy of one ``RemoteDevice``: one token, one
   lease, as Dask workers would be) send M queries each to a noise-free 4-mode chip behind a
   server with a rate limit; one of them times out on purpose (50 ms) so that its queries are
   re-sent with the same idempotency key; a rival client with another token is refused by the
   lease. Reported: p50 / p99 latency per query (retries included), requests refused by the
   limits, readings lost (a query that raised, or whose reading differs from the chip's) and
   double charges (server spend beyond one charge per query; log rows beyond one per query).
3. **Fuzzing**: seeded random malformed requests to every endpoint (bad tokens, scopes,
   bodies, arrays, headers): counts by status class; 5xx answers and settings applied must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine, write_section

from blacksat import MeteredDevice
from blacksat.devices import MZIMesh
from blacksat.querylog import QueryLog
from blacksat.remote import LeaseHeld, RemoteDevice
from blacksat.remote.auth import TokenStore
from blacksat.retry import RetryPolicy

OUT = Path(__file__).resolve().parent / "results" / "remote"


# ---------------------------------------------------------------------- a server process
@contextlib.contextmanager
def served(state: Path, device_args: dict[str, Any], *extra: str):
    """``blacksat serve`` in a child process on a free loopback port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "blacksat.product.cli", "serve", "--device", "mzi"]
    cmd += ["--device-args", json.dumps(device_args), "--port", str(port), "--state", str(state)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, *extra], stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        while not line.startswith("serving"):
            line = proc.stderr.readline()
            if proc.poll() is not None:
                raise RuntimeError(f"blacksat serve exited: {proc.stderr.read()}")
        url = f"http://127.0.0.1:{port}"
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(dev: RemoteDevice) -> dict[str, Any]:
    for _ in range(300):
        try:
            return dev.describe()
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("the server never answered")


def mean_std(v: list[float]) -> tuple[float, float]:
    a = np.asarray(v, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


# ---------------------------------------------------------------------- 1. overhead
def overhead(work: Path, reps: int, calls: int) -> dict[str, Any]:
    """Interleaved in-process and remote timings per repetition; ratios per repetition."""
    state = work / "overhead"
    secret = TokenStore(state / "tokens.json").create("bench", ("read", "query"))
    chip = MZIMesh(n_modes=16, seed=0)
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    with served(state, {"n_modes": 16}) as url:
        dev = RemoteDevice(url, token=secret)
        wait_ready(dev)
        local, remote = MeteredDevice(chip), MeteredDevice(dev)
        logged = MeteredDevice(chip, observers=[QueryLog(work / "local.sqlite")])
        meters = (("local", local), ("logged", logged), ("remote", remote))
        for label, (k, b) in {"K=64, B=256": (64, 256), "K=1, B=1": (1, 1)}.items():
            thetas = chip.space.sample(rng, k)
            x = rng.random((b, 16))
            local.query_many(thetas, x)  # warm-up (torch, connections)
            remote.query_many(thetas, x)
            logged.query_many(thetas, x)
            times: dict[str, list[float]] = {"local": [], "logged": [], "remote": []}
            for _ in range(reps):
                for name, meter in meters:
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        meter.query_many(thetas, x)
                    times[name].append((time.perf_counter() - t0) / calls)
            ratios = [
                r / max(lo, 1e-12) for r, lo in zip(times["remote"], times["local"], strict=True)
            ]
            out[label] = {
                "local_ms": mean_std([1e3 * t for t in times["local"]]),
                "logged_ms": mean_std([1e3 * t for t in times["logged"]]),
                "remote_ms": mean_std([1e3 * t for t in times["remote"]]),
                "added_ms": mean_std(
                    [1e3 * (r - lo) for r, lo in zip(times["remote"], times["local"], strict=True)]
                ),
                "ratio": mean_std(ratios),
                "ratio_logged": mean_std(
                    [r / lo for r, lo in zip(times["remote"], times["logged"], strict=True)]
                ),
                "reps": reps,
                "calls": calls,
            }
            print(f"overhead {label}: {out[label]}", flush=True)
    return out


# ---------------------------------------------------------------------- 2. load
def load(work: Path, clients: int, queries: int, rate: float, burst: int) -> dict[str, Any]:
    """N clients x M queries through one lease, with a rate limit, a time-out-prone client
    and a rival writer; every reading checked against the noise-free chip."""
    state = work / "load"
    store = TokenStore(state / "tokens.json")
    secret = store.create("workers", ("read", "query"))
    rival_secret = store.create("rival", ("read", "query"))
    admin = store.create("ops", ("read", "admin"))
    args = {"n_modes": 4, "noise": 0.0, "drift": 0.0}
    chip = MZIMesh(n_modes=4, noise=0.0, drift=0.0, seed=0)
    k, b = 4, 16
    extra = ["--rate", str(rate), "--burst", str(burst), "--lease-seconds", "60"]
    with served(state, args, *extra) as url:
        retries = Counter()

        def counting_sleep(seconds: float) -> None:
            retries[threading.current_thread().name] += 1
            time.sleep(seconds)

        retry = RetryPolicy(max_retries=200, backoff=0.02, factor=1.5, max_backoff=0.25,
                            sleep=counting_sleep)  # fmt: skip
        base = RemoteDevice(url, token=secret)
        wait_ready(base)
        copies = [pickle.loads(pickle.dumps(base)) for _ in range(clients)]
        for c in copies:
            c.retry = retry  # (a counting sleep, which does not pickle)
        copies[0].timeout = 0.05  # re-sends its queries with the same key, often
        latencies: list[float] = []
        lost: list[str] = []
        lock = threading.Lock()

        def work_(i: int) -> None:
            dev, r = copies[i], np.random.default_rng(100 + i)
            for _ in range(queries):
                thetas, x = chip.space.sample(r, k), r.random((b, 4))
                t0 = time.perf_counter()
                try:
                    y = dev.query_many(thetas, x)
                    ok = np.array_equal(y, chip.query_many(thetas, x))
                except Exception as exc:
                    y, ok = None, False
                    with lock:
                        lost.append(f"{type(exc).__name__}: {exc}")
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if y is not None and not ok:
                        lost.append("reading differs from the chip's")

        rival_refused = 0

        def rival() -> None:
            nonlocal rival_refused
            dev = RemoteDevice(url, token=rival_secret, retry=None)
            for _ in range(queries // 4 or 1):
                try:
                    dev.query_many(chip.space.sample(0, 1), np.ones((1, 4)))
                except LeaseHeld:
                    rival_refused += 1
                time.sleep(0.01)

        base.acquire()  # the workers' lease (shared by every copy)
        t0 = time.perf_counter()
        threads = [threading.Thread(target=work_, args=(i,), name=f"c{i}") for i in range(clients)]
        threads.append(threading.Thread(target=rival, name="rival"))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        stats = RemoteDevice(url, token=admin).describe()["stats"]
        spent = base.describe()["spent"]
    with QueryLog(state / "queries.sqlite", readonly=True) as log:
        rows = log.spent(client="workers").queries
    n = clients * queries
    lat = 1e3 * np.asarray(latencies)
    result = {
        "clients": clients,
        "queries": queries,
        "K": k,
        "B": b,
        "rate": rate,
        "burst": burst,
        "wall_s": wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "refused_rate": int(stats.get("refused_rate", 0)),
        "refused_lease": int(stats.get("refused_lease", 0)),
        "rival_refused": rival_refused,
        "client_retries": int(sum(retries.values())),
        "replayed": int(stats.get("replayed", 0)),
        "readings_lost": len(lost),
        "lost_examples": lost[:3],
        "double_charges": int(spent["queries"] - n) + int(spent["reconfigurations"] - n * k),
        "log_rows_beyond_one_per_query": int(rows - n),
        "server_spent": spent,
    }
    print(f"load: {result}", flush=True)
    return result


# ---------------------------------------------------------------------- 3. fuzzing
def fuzz(work: Path, per_endpoint: int, seed: int = 0) -> dict[str, Any]:
    """Seeded random malformed requests to every endpoint; counts by status class."""
    import httpx

    from blacksat.remote.wire import encode_array

    state = work / "fuzz"
    store = TokenStore(state / "tokens.json")
    tokens = {
        "query": store.create("q", ("read", "query")),
        "read": store.create("r", ("read",)),
        "admin": store.create("a", ("read", "admin")),
    }
    rng = np.random.default_rng(seed)
    chip = MZIMesh(n_modes=4, noise=0.0, drift=0.0, seed=0)

    def junk(n: int) -> str:
        return "".join(chr(c) for c in rng.integers(33, 127, size=n))

    def auth() -> dict[str, str]:
        pick = rng.integers(5)
        if pick == 0:
            return {}
        if pick == 1:
            return {"Authorization": f"Bearer {junk(20)}"}
        name = ("query", "read", "admin")[pick - 2]
        return {"Authorization": f"Bearer {tokens[name]}"}

    def query_body() -> bytes:
        doc: dict[str, Any] = {
            "thetas": encode_array(chip.space.sample(rng, 2)),
            "x": encode_array(rng.random((2, 4))),
        }
        which = ("thetas", "x")[rng.integers(2)]
        defect = rng.integers(9)
        if defect == 0:
            return bytes(rng.integers(0, 256, size=int(rng.integers(0, 200))).astype(np.uint8))
        if defect == 1:
            doc[which]["dtype"] = ("|O", ">f8", "<c16", junk(4))[rng.integers(4)]
        elif defect == 2:
            doc[which]["shape"] = [int(v) for v in rng.integers(-3, 10**6, size=rng.integers(0, 4))]
        elif defect == 3:
            doc[which]["data"] = junk(30)
        elif defect == 4:
            t = chip.space.sample(rng, 2)
            t[0, 0] = 100.0
            doc["thetas"] = encode_array(t)
        elif defect == 5:
            bad = rng.random((2, 4))
            bad[1, 1] = np.nan
            doc["x"] = encode_array(bad)
        elif defect == 6:
            del doc[which]
        elif defect == 7:
            doc["extra"] = junk(5)
        else:
            return json.dumps([doc]).encode()
        return json.dumps(doc).encode()

    endpoints = {
        "GET /v1/health": ("GET", "/v1/health", lambda: None),
        "GET /v1/describe": ("GET", "/v1/describe", lambda: None),
        "POST /v1/lease": ("POST", "/v1/lease", lambda: None),
        "DELETE /v1/lease": ("DELETE", "/v1/lease", lambda: None),
        "POST /v1/query": ("POST", "/v1/query", query_body),
        "POST /v1/admin/tokens": (
            "POST",
            "/v1/admin/tokens",
            lambda: json.dumps({"name": junk(6), "scopes": [junk(4)]}).encode(),
        ),
        "POST /v1/admin/tokens/{name}/revoke": (
            "POST",
            "/v1/admin/tokens/nobody/revoke",
            lambda: None,
        ),
        "PUT /v1/admin/tokens/{name}/budget": (
            "PUT",
            "/v1/admin/tokens/nobody/budget",
            lambda: json.dumps({"max_samples": float(rng.normal())}).encode(),
        ),
    }
    counts: dict[str, Counter] = {}
    with served(state, {"n_modes": 4, "noise": 0.0, "drift": 0.0}, "--rate", "1e6",
                "--burst", "1000000") as url:  # fmt: skip
        wait_ready(RemoteDevice(url, token=tokens["read"]))
        with httpx.Client(base_url=url, timeout=30) as http:
            for name, (method, path, make) in endpoints.items():
                c: Counter = Counter()
                for _ in range(per_endpoint):
                    headers = auth()
                    if rng.random() < 0.8:
                        headers["Idempotency-Key"] = "k" * 12 if rng.random() < 0.5 else junk(6)
                        headers["X-Blacksat-Lease"] = "lease-fuzz-1"
                    r = http.request(method, path, content=make(), headers=headers)
                    c[f"{r.status_code // 100}xx"] += 1
                    if r.status_code == 200 and path == "/v1/query":
                        c["query answered"] += 1
                counts[name] = c
        stats = RemoteDevice(url, token=tokens["admin"]).describe()["stats"]
    with QueryLog(state / "queries.sqlite", readonly=True) as log:
        applied = len(log)
    result = {
        "per_endpoint": per_endpoint,
        "counts": {k: dict(v) for k, v in counts.items()},
        "total": per_endpoint * len(endpoints),
        "server_errors": sum(v.get("5xx", 0) for v in counts.values()),
        "settings_applied": max(applied, int(stats.get("answered", 0))),
    }
    print(f"fuzz: {result}", flush=True)
    return result


# ---------------------------------------------------------------------- report
def report(res: dict[str, Any]) -> str:
    ov, ld, fz = res["overhead"], res["load"], res["fuzz"]

    def ms(v: tuple[float, float]) -> str:
        return f"{v[0]:.2f} ± {v[1]:.2f}"

    lines = [
        "## Remote devices (`blacksat serve` + `RemoteDevice`, loopback)",
        "",
        "`python benchmarks/remote.py`: the server is `blacksat serve` in its own process on "
        "127.0.0.1, the client `MeteredDevice(RemoteDevice(url))` in another; both share "
        "this machine's cores (an upper bound on what a separate lab PC adds). "
        f"Machine: {machine()}; load average {res['load_average']:.1f} at the start "
        "(other work shared the cores: compare the ratios, measured side by side, rather than "
        "the absolute times).",
        "",
        f"**Per-query overhead** (16-mode MZI; {ov['K=64, B=256']['reps']} repetitions, each "
        f"{ov['K=64, B=256']['calls']} calls in-process then {ov['K=64, B=256']['calls']} "
        "remote; mean ± std over repetitions, ddof=1):",
        "",
        "| query | in-process (ms) | in-process + query log (ms) | remote (ms) | added (ms) "
        "| remote / in-process | remote / in-process + log |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, v in ov.items():
        lines.append(
            f"| {label} | {ms(v['local_ms'])} | {ms(v['logged_ms'])} | {ms(v['remote_ms'])} | "
            f"{ms(v['added_ms'])} | {v['ratio'][0]:.2f} ± {v['ratio'][1]:.2f} | "
            f"{v['ratio_logged'][0]:.2f} ± {v['ratio_logged'][1]:.2f} |"
        )
    lines += [
        "",
        "The server writes every query (settings, inputs, readings) to its SQLite query log, "
        "committed with fsync, before it answers; the in-process + query log column does the "
        "same in-process (as `blacksat train` does), so the last column is the cost of the "
        "network hop itself. Added = remote - in-process, per repetition.",
    ]
    lines += [
        "",
        f"**Load test** ({ld['clients']} clients x {ld['queries']} queries of K = {ld['K']}, "
        f"B = {ld['B']} on a noise-free 4-mode chip, one token and one lease shared like Dask "
        f"workers; rate limit {ld['rate']:g} requests/s, burst {ld['burst']}; one client with a "
        "50 ms time-out re-sends its queries with the same idempotency key; a rival token tries "
        "to write meanwhile):",
        "",
        "| p50 latency | p99 latency | refused by the rate limit | rival refused by the lease "
        "| client retries | answers replayed | readings lost | double charges |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {ld['p50_ms']:.1f} ms | {ld['p99_ms']:.1f} ms | {ld['refused_rate']} | "
        f"{ld['rival_refused']} | {ld['client_retries']} | {ld['replayed']} | "
        f"{ld['readings_lost']} | {ld['double_charges']} |",
        "",
        "Readings lost: queries that raised or whose reading differs from the chip's; double "
        "charges: the server's spend beyond one charge per query (queries and "
        f"reconfigurations); log rows beyond one per query: {ld['log_rows_beyond_one_per_query']}.",
        "",
        f"**Fuzzing** (seeded random malformed requests, {fz['per_endpoint']} per endpoint, "
        f"{fz['total']} in all: bad or missing tokens, wrong scopes, random bytes, arrays "
        "with bad dtypes / shapes / base64, out-of-bounds and NaN settings, unknown keys):",
        "",
        "| endpoint | 2xx | 4xx | 5xx |",
        "| --- | --- | --- | --- |",
    ]
    for name, c in fz["counts"].items():
        lines.append(f"| `{name}` | {c.get('2xx', 0)} | {c.get('4xx', 0)} | {c.get('5xx', 0)} |")
    lines += [
        "",
        f"Server errors (5xx): {fz['server_errors']}; settings applied: "
        f"{fz['settings_applied']} (the 2xx answers are health, describe and lease calls with "
        "a valid token). The hypothesis fuzzing in `tests/remote/test_remote_fuzz.py` "
        "checks the same properties in the default test suite.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a small run; prints only")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        sizes = {"reps": 2, "calls": 2, "clients": 2, "queries": 6, "fuzz": 6}
    else:
        sizes = {"reps": 7, "calls": 10, "clients": 4, "queries": 50, "fuzz": 100}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        res = {
            "load_average": os.getloadavg()[0],
            "overhead": overhead(work, sizes["reps"], sizes["calls"]),
            "load": load(work, sizes["clients"], sizes["queries"], rate=20.0, burst=5),
            "fuzz": fuzz(work, sizes["fuzz"]),
        }
    text = report(res)
    print(text)
    if not args.quick:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.json").write_text(json.dumps(res, indent=1, default=str))
        write_section("remote", text)
    return res


if __name__ == "__main__":
    main()
