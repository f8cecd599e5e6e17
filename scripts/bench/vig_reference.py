#!/usr/bin/env python3
"""PyTorch CPU eager throughput of ViG for scripts/bench/vig: the official module tree of
scripts/reference/vig.py with its GLA scan switched to `chunked_recurrent_gla`, the same 64-token chunked
algorithm Sluice runs (not the per-token loop). Run once per measurement so thread settings never leak
between them; prints one JSON line.
  vig_reference.py torch NAME WEIGHTS THREADS BATCH SIZE [SECONDS]
  vig_reference.py check NAME WEIGHTS SIZE      chunked vs per-token scan on these weights (max rel. error)
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def check(name, weights, size):
    import numpy as np
    import torch
    import vig
    torch.set_num_threads(1)
    kind, c = vig.OFFICIAL[name]
    model = vig.build(kind, c)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32))
    with torch.no_grad():
        vig.GLA_IMPL = "naive"
        naive = model(x)
        vig.GLA_IMPL = "chunked"
        chunked = model(x)
    print(json.dumps({"engine": "check", "model": name, "size": size,
                      "max_rel_error": float((chunked - naive).abs().max() / naive.abs().max())}), flush=True)


def main():
    if sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    name, weights, threads, batch, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 3.0
    from vig import bench
    bench(name, weights, threads, batch, size, seconds)


if __name__ == "__main__":
    main()
