// ADE20K (SceneParsing, 150 classes) as mmsegmentation defines it in `mmseg/datasets/ade.py`
// (`ADE20KDataset.CLASSES` / `.PALETTE` in 0.x, `METAINFO['classes'/'palette']` in 1.x; the values are identical).
// See ../shared/docs/segmentation.md §3.8. The strings are exact: index 7 is "bed " with a trailing space.
// The palette is RGB, and indices 6 (road) and 48 (skyscraper) share the colour 8c8c8c, as upstream.
import SluiceMedia

extension LabelSet {
    /// mmseg's ADE20KDataset classes in index order (output channel i is class i), coloured with `Palette.ade20k`.
    public static let ade20k = LabelSet(name: "ade20k", labels: ade20kLabels, palette: Palette.ade20k)
}

/// The 150 class names of mmseg's ADE20KDataset, exactly (note `"bed "` at index 7). The comment on each line
/// is the index of its first name.
let ade20kLabels: [String] = [
    /*   0 */ "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed ", "windowpane", "grass", "cabinet",
    /*  11 */ "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    /*  22 */ "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence",
    /*  33 */ "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column",
    /*  43 */ "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator",
    /*  51 */ "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway",
    /*  60 */ "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench",
    /*  70 */ "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair", "boat", "bar",
    /*  78 */ "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier", "awning",
    /*  87 */ "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    /*  95 */ "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    /* 105 */ "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    /* 113 */ "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    /* 124 */ "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    /* 134 */ "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    /* 144 */ "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]

extension Palette {
    /// mmseg's ADE20K palette, one RGB colour per class of `LabelSet.ade20k` (index 6 and 48 are both 8c8c8c).
    public static let ade20k: [RGBColor] = ade20kPaletteRGB.map {
        RGBColor(UInt8(truncatingIfNeeded: $0 >> 16), UInt8(truncatingIfNeeded: $0 >> 8), UInt8(truncatingIfNeeded: $0))
    }
}

/// mmseg's ADE20K palette as 0xRRGGBB, 10 per line (the comment is the index of the first).
let ade20kPaletteRGB: [UInt32] = [
    /*   0 */ 0x787878, 0xb47878, 0x06e6e6, 0x503232, 0x04c803, 0x787850, 0x8c8c8c, 0xcc05ff, 0xe6e6e6, 0x04fa07,
    /*  10 */ 0xe005ff, 0xebff07, 0x96053d, 0x787846, 0x08ff33, 0xff0652, 0x8fff8c, 0xccff04, 0xff3307, 0xcc4603,
    /*  20 */ 0x0066c8, 0x3de6fa, 0xff0633, 0x0b66ff, 0xff0747, 0xff09e0, 0x0907e6, 0xdcdcdc, 0xff095c, 0x7009ff,
    /*  30 */ 0x08ffd6, 0x07ffe0, 0xffb806, 0x0aff47, 0xff290a, 0x07ffff, 0xe0ff08, 0x6608ff, 0xff3d06, 0xffc207,
    /*  40 */ 0xff7a08, 0x00ff14, 0xff0829, 0xff0599, 0x0633ff, 0xeb0cff, 0xa09614, 0x00a3ff, 0x8c8c8c, 0xfa0a0f,
    /*  50 */ 0x14ff00, 0x1fff00, 0xff1f00, 0xffe000, 0x99ff00, 0x0000ff, 0xff4700, 0x00ebff, 0x00adff, 0x1f00ff,
    /*  60 */ 0x0bc8c8, 0xff5200, 0x00fff5, 0x003dff, 0x00ff70, 0x00ff85, 0xff0000, 0xffa300, 0xff6600, 0xc2ff00,
    /*  70 */ 0x008fff, 0x33ff00, 0x0052ff, 0x00ff29, 0x00ffad, 0x0a00ff, 0xadff00, 0x00ff99, 0xff5c00, 0xff00ff,
    /*  80 */ 0xff00f5, 0xff0066, 0xffad00, 0xff0014, 0xffb8b8, 0x001fff, 0x00ff3d, 0x0047ff, 0xff00cc, 0x00ffc2,
    /*  90 */ 0x00ff52, 0x000aff, 0x0070ff, 0x3300ff, 0x00c2ff, 0x007aff, 0x00ffa3, 0xff9900, 0x00ff0a, 0xff7000,
    /* 100 */ 0x8fff00, 0x5200ff, 0xa3ff00, 0xffeb00, 0x08b8aa, 0x8500ff, 0x00ff5c, 0xb800ff, 0xff001f, 0x00b8ff,
    /* 110 */ 0x00d6ff, 0xff0070, 0x5cff00, 0x00e0ff, 0x70e0ff, 0x46b8a0, 0xa300ff, 0x9900ff, 0x47ff00, 0xff00a3,
    /* 120 */ 0xffcc00, 0xff008f, 0x00ffeb, 0x85ff00, 0xff00eb, 0xf500ff, 0xff007a, 0xfff500, 0x0abed4, 0xd6ff00,
    /* 130 */ 0x00ccff, 0x1400ff, 0xffff00, 0x0099ff, 0x0029ff, 0x00ffcc, 0x2900ff, 0x29ff00, 0xad00ff, 0x00f5ff,
    /* 140 */ 0x4700ff, 0x7a00ff, 0x00ffb8, 0x005cff, 0xb8ff00, 0x0085ff, 0xffd600, 0x19c2c2, 0x66ff00, 0x5c00ff,
]
