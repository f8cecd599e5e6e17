"""ONNX Runtime as a benchmark peer: export a torch module to ONNX once (cached), open it in onnxruntime
with a given thread count, time it. Shared by scripts/bench/{classify,hornet,vig}_reference.py; needs the
venv of scripts/bench/setup-venv (torch 2.x, onnx, onnxscript, onnxruntime).

Export: torch's TorchScript-based exporter first (`torch.onnx.export(..., dynamo=False)`, opset 17), then
the torch.export-based one (`dynamo=True`, opset 18) when that fails. The file is written into a scratch
folder and moved into place (external data first), with a sidecar PATH.json saying which torch and which
exporter made it; a killed export leaves no cache entry. Redone when the weights are newer than the file or
another torch made it.
"""
import contextlib
import json
import os
import re
import sys
import tempfile
import time
import warnings

import numpy as np


@contextlib.contextmanager
def stdout_to_stderr():
    """Both Python's and the C++ side's standard output go to stderr (the exporters print progress lines and
    IR graphs; the callers' stdout is JSON rows)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def describe(path):
    """The sidecar written by `export` (torch version, exporter, opset, seconds), or {} for a foreign file."""
    try:
        with open(path + ".json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def stale(path, weights):
    """Export again when the file is missing, was not made by this torch (no sidecar, or another version's:
    an older release's export, e.g. Debian's torch 1.13, is no current-release peer), or is older than
    the weights."""
    import torch
    return (not os.path.exists(path) or describe(path).get("torch") != torch.__version__
            or (weights is not None and os.path.getmtime(path) < os.path.getmtime(weights)))


def export(module, example, path, dynamic_batch):
    """Export `module` (eval mode) at `example` (one tensor) to `path`; returns the sidecar dict. Raises
    RuntimeError with both exporters' messages when neither can export it."""
    import torch
    module = module.eval()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    errors = []
    for dynamo in (False, True):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            kwargs = {"input_names": ["input"], "output_names": ["logits"]}
            if dynamo:
                kwargs["opset_version"] = 18
                if dynamic_batch:
                    kwargs["dynamic_shapes"] = ({0: torch.export.Dim("n", min=1, max=1024)},)
            else:
                kwargs["opset_version"] = 17
                if dynamic_batch:
                    kwargs["dynamic_axes"] = {"input": {0: "n"}, "logits": {0: "n"}}
            try:
                with torch.no_grad(), stdout_to_stderr(), warnings.catch_warnings():
                    warnings.simplefilter("ignore")       # the TorchScript exporter's deprecation and trace warnings
                    torch.onnx.export(module, (example,), os.path.join(tmp, base), dynamo=dynamo, **kwargs)
            except Exception as e:                    # noqa: BLE001  (any exporter failure: try the other one)
                first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
                errors.append("dynamo=%s: %s: %s" % (dynamo, type(e).__name__, first[0] if first else ""))
                continue
            info = {"torch": torch.__version__, "exporter": "dynamo=%s" % dynamo,
                    "opset": kwargs["opset_version"], "dynamic_batch": dynamic_batch,
                    "input_shape": list(example.shape), "seconds": round(time.perf_counter() - start, 1)}
            for f in sorted(os.listdir(tmp), key=lambda f: f == base):     # the .onnx last
                os.replace(os.path.join(tmp, f), os.path.join(folder, f))
        with open(path + ".json", "w") as f:
            json.dump(info, f)
        for stale_cache in optimized_paths(path):
            if os.path.exists(stale_cache):
                os.remove(stale_cache)
        print("exported %s with torch %s (%s, opset %d) in %.0f s" % (path, torch.__version__, info["exporter"],
              info["opset"], info["seconds"]), file=sys.stderr, flush=True)
        return info
    raise RuntimeError("; ".join(errors))


def remove(path):
    """Remove an export and what goes with it (sidecar, ORT-optimised cache, external data)."""
    for f in [path, path + ".json", path + ".data"] + optimized_paths(path):
        if os.path.exists(f):
            os.remove(f)


def optimized_paths(path):
    import onnxruntime as ort
    return [path + ".ort-%s-optimized.onnx" % ort.__version__]


def session(path, threads, cache_optimized=False):
    """An onnxruntime CPU session: intra-op THREADS, inter-op 1, sequential, all graph optimisations. With
    cache_optimized, the optimised graph is saved next to PATH on first use and later sessions load it with
    optimisations off (the same graph; it spares ViG's unrolled scan ~50 s of graph optimisation per
    process). The saved graph may hold this CPU's layout choices, so the cache belongs to this machine."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    load = path
    if cache_optimized:
        optimized = optimized_paths(path)[0]
        if os.path.exists(optimized) and os.path.getmtime(optimized) >= os.path.getmtime(path):
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            load = optimized
        else:
            scratch = optimized + ".%d.tmp" % os.getpid()
            options.optimized_model_filepath = scratch
            result = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            os.replace(scratch, optimized)
            return result
    return ort.InferenceSession(load, options, providers=["CPUExecutionProvider"])


def timed(run, min_iterations, seconds):
    """One warm-up call, then calls until both min_iterations and seconds are reached: (calls, seconds)."""
    run()
    count, start = 0, time.perf_counter()
    while count < min_iterations or time.perf_counter() - start < seconds:
        run()
        count += 1
    return count, time.perf_counter() - start


def max_abs_diff(got, expected):
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())
