#!/usr/bin/python3
"""What each classifier's preprocessing recipe makes of the bundled photos, by PIL + torchvision.

For every photo in assets/images and every recipe the image classifiers use, this runs the reference
chain the official evaluation code uses,

    ImageOps.exif_transpose(Image.open(p)).convert("RGB")
    -> transforms.Resize(shorter, interpolation)  -> transforms.CenterCrop(crop)
    -> transforms.ToTensor() -> transforms.Normalize(mean / 255, std / 255)

and writes the result back on the 0...255 scale (t * std + mean, rounded; the round trip is checked to
be within 0.01 grey levels) as an 8-bit RGB PNG per photo and geometry, into
Tests/SluiceMediaTests/Fixtures/photos/, described by photos/manifest.json (recipes, photos, the
library versions that made them). The Swift test (PhotoPreprocessTests) feeds the same photos through
FramePreparer, the path `classify`, `run` and the service use, and compares before normalisation.

    /usr/bin/python3 scripts/reference/preprocess.py      (Debian: python3-pil python3-torchvision)
"""
import json
import os
import shutil

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image, ImageOps
from torchvision import transforms

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PHOTOS = os.path.join(ROOT, "assets", "images")
OUT = os.path.join(ROOT, "Tests", "SluiceMediaTests", "Fixtures", "photos")

# The recipes of ModelRegistry's image classifiers (Sources/SluiceMedia/InputSpec.swift, Preprocessing):
# mean and std on the 0...255 scale, as Sluice states them. The test fails for a card whose recipe is
# not listed here, or whose constants differ.
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
RECIPES = [
    {"name": "tf_lite", "models": "efficientnet_lite0", "resize_shorter_side": 256, "crop_size": 224,
     "interpolation": "bicubic", "mean": [127.0] * 3, "std": [128.0] * 3},
    {"name": "imagenet", "models": "hornet_*, vig_*, vig_h_*", "resize_shorter_side": 256, "crop_size": 224,
     "interpolation": "bicubic", "mean": IMAGENET_MEAN, "std": IMAGENET_STD},
]
FILTERS = {"bicubic": transforms.InterpolationMode.BICUBIC, "bilinear": transforms.InterpolationMode.BILINEAR}


def geometry(recipe):
    return "%d_%d_%s" % (recipe["resize_shorter_side"], recipe["crop_size"], recipe["interpolation"])


def reference(path, recipe):
    """The recipe's tensor (CHW, normalised) for one photo, by torchvision."""
    chain = transforms.Compose([
        transforms.Resize(recipe["resize_shorter_side"], interpolation=FILTERS[recipe["interpolation"]]),
        transforms.CenterCrop(recipe["crop_size"]),
        transforms.ToTensor(),
        transforms.Normalize([m / 255 for m in recipe["mean"]], [s / 255 for s in recipe["std"]]),
    ])
    with Image.open(path) as image:
        return chain(ImageOps.exif_transpose(image).convert("RGB"))


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    photos = sorted(f for f in os.listdir(PHOTOS) if f.lower().endswith((".jpg", ".jpeg", ".png")))
    cases = []
    for recipe in RECIPES:
        mean = torch.tensor(recipe["mean"]).view(3, 1, 1)
        std = torch.tensor(recipe["std"]).view(3, 1, 1)
        for photo in photos:
            tensor = reference(os.path.join(PHOTOS, photo), recipe)
            grey = tensor * std + mean  # back on the 0...255 scale: (p - mean) / std * std + mean
            pixels = grey.round().clamp(0, 255)
            assert float((grey - pixels).abs().max()) < 0.01, (photo, recipe["name"])
            expected = "%s_%s.png" % (os.path.splitext(photo)[0], geometry(recipe))
            array = pixels.permute(1, 2, 0).to(torch.uint8).numpy()
            if not os.path.exists(os.path.join(OUT, expected)):
                Image.fromarray(np.ascontiguousarray(array), "RGB").save(os.path.join(OUT, expected))
            else:  # recipes sharing a geometry must agree on the pixels
                with Image.open(os.path.join(OUT, expected)) as earlier:
                    assert (np.asarray(earlier) == array).all(), (photo, recipe["name"])
            cases.append({"recipe": recipe["name"], "photo": "assets/images/" + photo, "expected": expected})
    manifest = {
        "made_by": "scripts/reference/preprocess.py",
        "seed": None,
        "versions": {"pillow": PIL.__version__, "torchvision": torchvision.__version__,
                     "torch": torch.__version__, "numpy": np.__version__},
        "reference": "exif_transpose + convert('RGB') + Resize(shorter) + CenterCrop + ToTensor + Normalize, "
                     "written back as round(t * std + mean)",
        "recipes": RECIPES,
        "cases": cases,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("wrote %d cases (%d photos x %d recipes) to %s" % (len(cases), len(photos), len(RECIPES), OUT))


if __name__ == "__main__":
    main()
