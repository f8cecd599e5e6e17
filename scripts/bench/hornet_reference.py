#!/usr/bin/env python3
"""PyTorch CPU eager throughput of HorNet and the machine's sgemm rate, for scripts/bench/hornet.

Run once per measurement so thread settings never leak between them; prints one JSON line.
  hornet_reference.py sgemm                                   numpy float32 1024^3 matmul, 1 thread
  hornet_reference.py torch WEIGHTS THREADS BATCH [NAME]      official module tree (scripts/reference/hornet.py)
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def sgemm():
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    b = a.T.copy()
    a @ b
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"engine": "sgemm", "threads": 1, "gflops": 2 * 1024 ** 3 / best / 1e9}), flush=True)


def main():
    if sys.argv[1] == "sgemm":
        sgemm()
        return
    weights, threads, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    name = sys.argv[5] if len(sys.argv) > 5 else "hornet_tiny_7x7"
    from hornet import bench
    bench(name, weights, threads, batch)


if __name__ == "__main__":
    main()
