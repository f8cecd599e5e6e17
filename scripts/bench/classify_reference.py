#!/usr/bin/env python3
"""PyTorch CPU eager and ONNX Runtime CPU throughput for EfficientNet-Lite0 on the bundled weights.

Called by scripts/bench/classify, which runs it once per (engine, threads) so thread settings never
leak between measurements. Prints one JSON line per measurement.

  classify_reference.py export ONNX_PATH                       (needs torch)
  classify_reference.py torch|onnxruntime THREADS ONNX_PATH IMAGE... (model-only and end-to-end)
"""
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
from efficientnet_lite import preprocess  # noqa: E402  (the same preprocessing as the parity fixtures)


def timed(run, batch, seconds=3.0, min_iterations=5):
    run(batch)  # warm-up
    count, start = 0, time.perf_counter()
    while count < min_iterations or time.perf_counter() - start < seconds:
        run(batch)
        count += 1
    return count * batch.shape[0] / (time.perf_counter() - start)


def main():
    mode = sys.argv[1]
    if mode == "export":
        import torch
        from efficientnet_lite import official_model
        model = official_model()
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), sys.argv[2], input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
                          opset_version=13)
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
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
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
