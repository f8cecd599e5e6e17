#!/usr/bin/env python3
"""PyTorch reference for EfficientNet-Lite0 with the bundled ImageNet weights.

Uses the official model code of the PyPI package `efficientnet-lite-pytorch` 0.1.0 (Apache-2.0; the
lukemelas module tree the weights' key names follow), imported straight from its pure-Python wheel.
Writes the preprocessed inputs (NCHW) and the logits the Swift parity test compares against.

Run with Debian's interpreter, which has torch (scripts/setup --reference installs it):
    /usr/bin/python3 scripts/reference/efficientnet_lite.py
"""
import glob
import os
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORK = os.path.join(ROOT, ".work", "reference")
WEIGHTS = os.environ.get("SLUICE_LITE0_WEIGHTS",
                         os.path.join(ROOT, ".work", "weights", "efficientnet-lite0-57934424.pth"))
OUT = os.path.join(ROOT, "Tests", "SluiceModelsTests", "Fixtures", "efficientnet_lite0")
IMAGES = ["assets/images/chelsea.png", "assets/images/grace_hopper.jpg"]


def official_model():
    wheels = glob.glob(os.path.join(WORK, "efficientnet_lite_pytorch-0.1.0-*.whl"))
    if not wheels:
        os.makedirs(WORK, exist_ok=True)
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                               "efficientnet-lite-pytorch==0.1.0", "-d", WORK])
        wheels = glob.glob(os.path.join(WORK, "efficientnet_lite_pytorch-0.1.0-*.whl"))
    sys.path.insert(0, wheels[0])  # a pure-Python wheel is an importable zip
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(WEIGHTS, map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


def preprocess(path, resize=256, crop=224):
    """torchvision Resize(256, BICUBIC) + CenterCrop(224) on a PIL image, then (x - 127) / 128."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if w <= h:
        size = (resize, int(resize * h / w))
    else:
        size = (int(resize * w / h), resize)
    image = image.resize(size, Image.BICUBIC)
    w, h = image.size
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    image = image.crop((left, top, left + crop, top + crop))
    x = (np.asarray(image, dtype=np.float32) - 127.0) / 128.0
    return x.transpose(2, 0, 1)


def write_manifest():
    """Provenance of the fixtures: what made them, from which weights, with which libraries."""
    import hashlib
    import json
    import PIL
    import torch
    with open(WEIGHTS, "rb") as f:
        weights_sha256 = hashlib.sha256(f.read()).hexdigest()
    manifest = {
        "generator": "scripts/reference/efficientnet_lite.py",
        "seed": None,
        "model": "efficientnet_lite_pytorch 0.1.0 (PyPI wheel), EfficientNet.from_name('efficientnet-lite0')",
        "weights": {"file": os.path.basename(WEIGHTS), "sha256": weights_sha256},
        "inputs": IMAGES,
        "preprocessing": "Resize(256, bicubic) + CenterCrop(224) on the PIL image, (x - 127) / 128, NCHW",
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "files": {"input.npy": "the preprocessed batch, float32 [2, 3, 224, 224]",
                  "logits.npy": "the official model's logits, float32 [2, 1000]"},
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def main():
    import torch
    model = official_model()
    x = np.stack([preprocess(os.path.join(ROOT, p)) for p in IMAGES])
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    os.makedirs(OUT, exist_ok=True)
    np.save(os.path.join(OUT, "input.npy"), x.astype(np.float32))
    np.save(os.path.join(OUT, "logits.npy"), logits.astype(np.float32))
    write_manifest()
    for path, row in zip(IMAGES, logits):
        top = np.argsort(-row)[:3]
        print(path, [(int(i), float(row[i])) for i in top])


if __name__ == "__main__":
    main()
