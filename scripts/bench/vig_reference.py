#!/usr/bin/env python3
"""PyTorch CPU eager and ONNX Runtime CPU throughput of ViG for scripts/bench/vig: the official module tree
of scripts/reference/vig.py with its GLA scan switched to `chunked_recurrent_gla`, the same 64-token chunked
algorithm Sluice runs (not the per-token loop). torch and onnxruntime are the venv's of
scripts/bench/setup-venv (current releases). Run once per measurement so thread settings never leak between
them; prints JSON lines.
  vig_reference.py torch NAME WEIGHTS THREADS BATCH SIZE [SECONDS]
  vig_reference.py check NAME WEIGHTS SIZE      chunked vs per-token scan on these weights (max rel. error)
  vig_reference.py export NAME WEIGHTS SIZE ONNX
        the chunked model at 1x3xSIZExSIZE to ONNX (cached: only when missing or older than WEIGHTS); prints
        an "export" row either way, with the exporters' messages when it cannot be exported
  vig_reference.py check-onnx NAME WEIGHTS SIZE ONNX    onnxruntime vs torch (chunked) logits, max abs diff
  vig_reference.py onnxruntime NAME ONNX THREADS SIZE [SECONDS]

The export traces the model (torch.onnx.export, dynamo=False): the scan's Python loop over 64-token chunks
unrolls into the graph (T/64 chunk bodies per direction and layer: ~5 min to export at 1024 pixels), and
its data-dependent test (a chunk whose |cumulative log decay| exceeds 60 takes exact per-token steps) is
recorded as taken for the traced input. The traced input is the benchmark's own input (numpy's
default_rng(0) normal draws, as vig.bench), so the graph computes exactly what torch computes on what is
timed; check-onnx verifies that. The torch.export-based exporter (dynamo=True) is tried next and rejects
that test ("Could not guard on data-dependent expression"). onnxruntime's graph optimisation of the unrolled
graph takes ~50 s at 1024 pixels, so the optimised graph is cached next to the file (onnx_peer.session).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
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
    print(json.dumps({"engine": "check", "kind": "chunked_vs_naive", "model": name, "size": size,
                      "max_rel_error": float((chunked - naive).abs().max() / naive.abs().max())}), flush=True)


def chunked_model(name, weights):
    import torch
    import vig
    vig.GLA_IMPL = "chunked"
    kind, c = vig.OFFICIAL[name]
    model = vig.build(kind, c)
    model.load_state_dict(torch.load(weights, map_location="cpu"))
    return model


def bench_input(size):
    """The input vig.bench times at batch 1."""
    import numpy as np
    return np.random.default_rng(0).standard_normal((1, 3, size, size), dtype=np.float32)


def main():
    mode = sys.argv[1]
    if mode == "check":
        check(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    if mode == "torch":
        name, weights, threads, batch, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
        seconds = float(sys.argv[7]) if len(sys.argv) > 7 else 3.0
        from vig import bench
        bench(name, weights, threads, batch, size, seconds)
        return
    import onnx_peer
    if mode == "export":
        import torch
        name, weights, size, path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        row = {"engine": "export", "model": name, "size": size, "torch": torch.__version__}
        if onnx_peer.stale(path, weights):
            print("exporting %s at %dx%d to %s (the unrolled scan: minutes at 1024)" % (name, size, size, path),
                  file=sys.stderr, flush=True)
            try:
                onnx_peer.export(chunked_model(name, weights), torch.from_numpy(bench_input(size)), path,
                                 dynamic_batch=False)
            except RuntimeError as e:
                onnx_peer.remove(path)                  # an older weights' export is no stand-in
                row.update(ok=False, message=str(e))
                print("onnxruntime: %s at %d could not be exported to ONNX by torch %s (%s); torch only there"
                      % (name, size, torch.__version__, e), file=sys.stderr, flush=True)
                print(json.dumps(row), flush=True)
                return
        row.update(ok=True, export=onnx_peer.describe(path))
        print(json.dumps(row), flush=True)
    elif mode == "check-onnx":
        import onnxruntime as ort
        import torch
        name, weights, size, path = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        torch.set_num_threads(1)
        x = bench_input(size)
        with torch.no_grad():
            expected = chunked_model(name, weights)(torch.from_numpy(x)).numpy()
        got = onnx_peer.session(path, 1, cache_optimized=True).run(None, {"input": x})[0]
        diff, scale = onnx_peer.max_abs_diff(got, expected)
        print(json.dumps({"engine": "check", "kind": "onnx_vs_torch", "model": name, "size": size,
                          "torch": torch.__version__, "onnxruntime": ort.__version__,
                          "export": onnx_peer.describe(path), "max_abs_diff": diff, "max_abs_logit": scale}),
              flush=True)
    elif mode == "onnxruntime":
        import onnxruntime as ort
        name, path, threads, size = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        seconds = float(sys.argv[6]) if len(sys.argv) > 6 else 3.0
        session = onnx_peer.session(path, threads, cache_optimized=True)
        x = bench_input(size)
        count, elapsed = onnx_peer.timed(lambda: session.run(None, {"input": x}), 3, seconds)
        print(json.dumps({"engine": "onnxruntime", "version": ort.__version__, "model": name, "threads": threads,
                          "batch": 1, "size": size, "images_per_s": count / elapsed,
                          "ms_per_batch": 1000 * elapsed / count}), flush=True)
    else:
        sys.exit("unknown mode %r" % mode)


if __name__ == "__main__":
    main()
