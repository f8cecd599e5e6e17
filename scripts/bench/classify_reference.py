#!/usr/bin/env python3
"""PyTorch CPU eager and ONNX Runtime CPU throughput for EfficientNet-Lite0 on the bundled weights.

Called by scripts/bench/classify with the venv of scripts/bench/setup-venv (current releases: pip torch
2.x, onnxruntime; Pillow for the end-to-end rows), once per (engine, threads) so thread settings never
leak between measurements. Prints one JSON line per measurement.

  classify_reference.py export ONNX_PATH          export the official model (dynamic batch; cached: only
                                                  when missing or older than the weights; see onnx_peer.py;
                                                  no file and a message on stderr when it cannot)
  classify_reference.py check ONNX_PATH           onnxruntime vs torch logits on one random batch of 8
  classify_reference.py torch|onnxruntime THREADS ONNX_PATH IMAGE...   model-only and end-to-end rows
"""
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import onnx_peer  # noqa: E402
from efficientnet_lite import WEIGHTS, preprocess  # noqa: E402  (the same preprocessing as the parity fixtures)


def timed(run, batch, seconds=3.0, min_iterations=5):
    count, elapsed = onnx_peer.timed(lambda: run(batch), min_iterations, seconds)
    return count * batch.shape[0] / elapsed


def main():
    mode = sys.argv[1]
    if mode == "export":
        import torch
        from efficientnet_lite import official_model
        if onnx_peer.stale(sys.argv[2], WEIGHTS):
            try:
                onnx_peer.export(official_model(), torch.zeros(1, 3, 224, 224), sys.argv[2], dynamic_batch=True)
            except RuntimeError as e:
                onnx_peer.remove(sys.argv[2])
                print("onnxruntime: efficientnet_lite0 could not be exported to ONNX by torch %s (%s); no ONNX "
                      "Runtime rows" % (torch.__version__, e), file=sys.stderr, flush=True)
        return
    if mode == "check":
        import onnxruntime as ort
        import torch
        from efficientnet_lite import official_model
        torch.set_num_threads(1)
        x = np.random.default_rng(1).standard_normal((8, 3, 224, 224), dtype=np.float32)
        with torch.no_grad():
            expected = official_model()(torch.from_numpy(x)).numpy()
        got = onnx_peer.session(sys.argv[2], 1).run(None, {"input": x})[0]
        diff, scale = onnx_peer.max_abs_diff(got, expected)
        print(json.dumps({"engine": "check", "kind": "onnx_vs_torch", "batch": 8, "torch": torch.__version__,
                          "onnxruntime": ort.__version__, "export": onnx_peer.describe(sys.argv[2]),
                          "max_abs_diff": diff, "max_abs_logit": scale}), flush=True)
        return
    threads, onnx_path, images = int(sys.argv[2]), sys.argv[3], sys.argv[4:]
    if mode == "torch":
        import torch
        from efficientnet_lite import official_model
        torch.set_num_threads(threads)
        model = official_model()
        version = torch.__version__

        def run(x):
            with torch.no_grad():
                return model(torch.from_numpy(x)).numpy()
    else:
        import onnxruntime as ort
        session = onnx_peer.session(onnx_path, threads)
        version = ort.__version__

        def run(x):
            return session.run(None, {"input": x})[0]

    rng = np.random.default_rng(0)
    for batch in (1, 8):
        x = rng.standard_normal((batch, 3, 224, 224), dtype=np.float32)
        print(json.dumps({"engine": mode, "version": version, "threads": threads, "batch": batch,
                          "kind": "model", "images_per_s": timed(run, x)}), flush=True)
        # End to end: decode + resize + crop + normalise + model, over every image once.
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            chunk = np.stack([preprocess(p) for p in images[i:i + batch]])
            run(chunk)
        rate = len(images) / (time.perf_counter() - start)
        print(json.dumps({"engine": mode, "version": version, "threads": threads, "batch": batch,
                          "kind": "end_to_end", "images_per_s": rate}), flush=True)


if __name__ == "__main__":
    main()
