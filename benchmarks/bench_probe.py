"""Benchmark: scikit-learn ``GridSearchCV(KernelRidge(kernel="rbf"))`` vs ``mmcl.probing.kernel_ridge``.

The workload is the nonlinear probe of SPEC §4 on one representation: N fitting samples
(default 10 000, the size of a val split) of a d-dimensional encoding, every continuous factor
(default 7, the continuous image factors of Multimodal3DIdent), 2000 test samples. Both sides
run in this one invocation, on the same data, with the same thread limits; the script checks
that they agree (selected parameters, test R^2 within 1e-6), prints a JSON record and writes it
to ``docs/bench/probe.json``.

Wall-clock and process CPU times are both recorded. On a shared machine the CPU time of a
single-threaded measurement is what it takes on an idle core, so ``speedup_*_cpu`` is the
figure to compare there. ``--parallel`` runs the measurements in concurrent worker processes
(each single-threaded), which keeps a contended benchmark from taking hours; the CPU times are
unaffected by that.

    python benchmarks/bench_probe.py [--n 10000] [--factors 7] [--device cpu] [--threads 1] [--parallel]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from mmcl.machine import machine_record


def make_data(n: int, n_test: int, d: int, factors: int, seed: int) -> tuple[np.ndarray, ...]:
    """Encodings and factors with a nonlinear, noisy relation (a mix of encoded and ignored)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + n_test, d))
    w = rng.standard_normal((d, factors)) / np.sqrt(d)
    y = np.sin(2 * x @ w) + np.linspace(0.05, 1.0, factors) * rng.standard_normal((n + n_test, factors))
    return x[:n], y[:n], x[n:], y[n:]


def measure(task: str, args: dict) -> dict:
    """One timed measurement: ``ours:<solver>`` or ``sklearn`` (on ``args['sklearn_factors']``)."""
    import torch
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.metrics import r2_score
    from sklearn.model_selection import GridSearchCV
    from threadpoolctl import threadpool_limits

    from mmcl.probing.kernel_ridge import ALPHAS, grid_search_kernel_ridge

    # every BLAS / OpenMP library must be loaded before threadpool_limits, or it is not limited
    torch.set_num_threads(args["threads"])
    x, y, x_test, y_test = make_data(args["n"], args["n_test"], args["dim"], args["factors"], args["seed"])
    cuda = args["device"].startswith("cuda")
    with threadpool_limits(args["threads"]):
        if task.startswith("ours:"):
            if cuda:
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            fits = grid_search_kernel_ridge(
                x, y, targets=[[j] for j in range(args["factors"])], device=args["device"], solver=task[5:]
            )
            results = [(f.alpha, f.gamma, f.score(x_test, y_test[:, j])) for j, f in enumerate(fits)]
            if cuda:
                torch.cuda.synchronize()
        else:
            grid = {"alpha": list(ALPHAS), "gamma": np.logspace(-2, 2, 4)}
            t0, c0 = time.perf_counter(), time.process_time()
            results = []
            for j in range(args["sklearn_factors"]):
                search = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=3).fit(x, y[:, j])
                best = search.best_params_
                results.append((best["alpha"], best["gamma"], r2_score(y_test[:, j], search.predict(x_test))))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{task}: {wall:.1f}s wall, {cpu:.1f}s CPU", file=sys.stderr, flush=True)
    return {"task": task, "wall_s": wall, "cpu_s": cpu, "results": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="fitting samples (default 10000)")
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--dim", type=int, default=5, help="encoding size (default 5)")
    p.add_argument("--factors", type=int, default=7, help="continuous factors probed (default 7)")
    p.add_argument("--device", default="cpu", help="device of ours (cpu, cuda)")
    p.add_argument("--solvers", default="eigh,cholesky", help="our solvers to time (default eigh,cholesky)")
    p.add_argument(
        "--threads", type=int, default=1, help="BLAS / torch threads of every measurement (default 1)"
    )
    p.add_argument(
        "--sklearn-factors",
        type=int,
        default=None,
        help="time sklearn on this many factors only and scale linearly (each factor is an independent "
        "GridSearchCV; marked in the output). Default: all",
    )
    p.add_argument("--parallel", action="store_true", help="run the measurements in concurrent processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/bench/probe.json")
    args = p.parse_args(argv)

    import scipy
    import sklearn
    import torch
    from threadpoolctl import threadpool_info

    n_sk = args.factors if args.sklearn_factors is None else min(args.sklearn_factors, args.factors)
    params = {**vars(args), "sklearn_factors": n_sk}
    tasks = [f"ours:{s}" for s in args.solvers.split(",") if s] + ["sklearn"]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if args.parallel:
        with ProcessPoolExecutor(len(tasks), mp_context=get_context("spawn")) as pool:
            measured = list(pool.map(measure, tasks, [params] * len(tasks)))
    else:
        measured = [measure(t, params) for t in tasks]
    by_task = {m["task"]: m for m in measured}
    sk = by_task["sklearn"]
    scale = args.factors / n_sk
    timings: dict[str, float] = {
        "sklearn_measured_s": sk["wall_s"],
        "sklearn_measured_cpu_s": sk["cpu_s"],
        "sklearn_s": sk["wall_s"] * scale,
        "sklearn_cpu_s": sk["cpu_s"] * scale,
    }
    agreement = {}
    for task in tasks[:-1]:
        solver, m = task[5:], by_task[task]
        timings[f"ours_{solver}_s"] = m["wall_s"]
        timings[f"ours_{solver}_cpu_s"] = m["cpu_s"]
        timings[f"speedup_{solver}"] = timings["sklearn_s"] / m["wall_s"]
        timings[f"speedup_{solver}_cpu"] = timings["sklearn_cpu_s"] / m["cpu_s"]
        pairs = list(zip(m["results"], sk["results"], strict=False))  # the factors sklearn was run on
        agreement[solver] = {
            "factors_compared": len(pairs),
            "same_params": all(abs(a[0] - b[0]) < 1e-12 and abs(a[1] - b[1]) < 1e-9 for a, b in pairs),
            "max_abs_r2_diff": max(abs(a[2] - b[2]) for a, b in pairs),
        }
    record = {
        "benchmark": "kernel ridge grid search probe (SPEC 4): alpha {1,.1,.01,.001} x gamma logspace(-2,2,4), "
        "3-fold CV, refit, test R^2; one search per factor",
        "command": "python benchmarks/bench_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "workload": {
            "n_fit": args.n,
            "n_test": args.n_test,
            "encoding_size": args.dim,
            "factors": args.factors,
        },
        "machine": machine_record(
            threads_per_measurement=args.threads,
            parallel_measurements=args.parallel,
            torch=torch.__version__,
            sklearn=sklearn.__version__,
            numpy=np.__version__,
            scipy=scipy.__version__,
            blas=sorted({f"{i['internal_api']}:{i.get('version')}" for i in threadpool_info()}),
            gpu=torch.cuda.get_device_name(0) if args.device.startswith("cuda") else None,
            loadavg_before=[round(v, 2) for v in load_before],
            loadavg_after=[round(v, 2) for v in os.getloadavg()],
        ),
        "sklearn_timed_on_factors": n_sk,
        "total_wall_s": round(time.perf_counter() - t0, 1),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "agreement": agreement,
        "test_r2": {m["task"]: [round(r[2], 6) for r in m["results"]] for m in measured},
    }
    text = json.dumps(record, indent=2)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    ok = all(a["same_params"] and a["max_abs_r2_diff"] < 1e-6 for a in agreement.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
