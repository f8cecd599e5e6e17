#!/usr/bin/env python3
"""PyTorch CPU eager and ONNX Runtime CPU throughput of HorNet and the machine's sgemm rate, for
scripts/bench/hornet. torch and onnxruntime are the venv's of scripts/bench/setup-venv (current releases).

Run once per measurement so thread settings never leak between them; prints one JSON line per row.
  hornet_reference.py sgemm                                   numpy float32 1024^3 matmul, 1 thread
  hornet_reference.py torch WEIGHTS THREADS BATCH [NAME]      official module tree (scripts/reference/hornet.py)
  hornet_reference.py export WEIGHTS ONNX [NAME]              that module at 1x3x224x224, dynamic batch, to ONNX
                                                              (cached: only when missing or older than WEIGHTS;
                                                              no file and a message on stderr when it cannot)
  hornet_reference.py check WEIGHTS ONNX [NAME]               onnxruntime vs torch logits, batch 1 and 8
  hornet_reference.py onnxruntime ONNX THREADS BATCH [NAME] [SECONDS]
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))


def sgemm():
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    os.environ["OMP_NUM_THREADS"] = "1"
    import time
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


def model(name, weights):
    import torch
    from hornet import build, official_config
    m = build(official_config(name)).eval()
    m.load_state_dict(torch.load(weights, map_location="cpu"))
    return m


def recipe_input(batch):
    """The input hornet.bench times (numpy's default_rng(0) normal draws)."""
    import numpy as np
    return np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)


def main():
    mode = sys.argv[1]
    if mode == "sgemm":
        sgemm()
        return
    if mode == "torch":
        weights, threads, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        name = sys.argv[5] if len(sys.argv) > 5 else "hornet_tiny_7x7"
        from hornet import bench
        bench(name, weights, threads, batch)
        return
    import onnx_peer
    if mode == "export":
        import torch
        weights, path = sys.argv[2], sys.argv[3]
        name = sys.argv[4] if len(sys.argv) > 4 else "hornet_tiny_7x7"
        torch.set_num_threads(1)
        if onnx_peer.stale(path, weights):
            try:
                onnx_peer.export(model(name, weights), torch.zeros(1, 3, 224, 224), path, dynamic_batch=True)
            except RuntimeError as e:
                onnx_peer.remove(path)
                print("onnxruntime: %s could not be exported to ONNX by torch %s (%s); torch only"
                      % (name, torch.__version__, e), file=sys.stderr, flush=True)
    elif mode == "check":
        import onnxruntime as ort
        import torch
        weights, path = sys.argv[2], sys.argv[3]
        name = sys.argv[4] if len(sys.argv) > 4 else "hornet_tiny_7x7"
        torch.set_num_threads(1)
        m, session = model(name, weights), onnx_peer.session(path, 1)
        for batch in (1, 8):
            x = recipe_input(batch)
            with torch.no_grad():
                expected = m(torch.from_numpy(x)).numpy()
            diff, scale = onnx_peer.max_abs_diff(session.run(None, {"input": x})[0], expected)
            print(json.dumps({"engine": "check", "kind": "onnx_vs_torch", "model": name, "batch": batch,
                              "torch": torch.__version__, "onnxruntime": ort.__version__,
                              "export": onnx_peer.describe(path), "max_abs_diff": diff, "max_abs_logit": scale}),
                  flush=True)
    elif mode == "onnxruntime":
        import onnxruntime as ort
        path, threads, batch = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        name = sys.argv[5] if len(sys.argv) > 5 else "hornet_tiny_7x7"
        seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 3.0
        session = onnx_peer.session(path, threads)
        x = recipe_input(batch)
        count, elapsed = onnx_peer.timed(lambda: session.run(None, {"input": x}), 5, seconds)
        print(json.dumps({"engine": "onnxruntime", "version": ort.__version__, "model": name, "threads": threads,
                          "batch": batch, "kind": "model", "images_per_s": count * batch / elapsed,
                          "ms_per_batch": 1000 * elapsed / count}), flush=True)
    else:
        sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
