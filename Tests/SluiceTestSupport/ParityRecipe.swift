/// The deterministic "random" values the reference scripts (scripts/reference/hornet.py and the scripts
/// that import its recipe) and the tests share, so weights need not be committed:
///   seed = FNV-1a 64 of the key's UTF-8 bytes; z_i = splitmix64 finaliser of seed + (i + 1)·0x9E3779B97F4A7C15;
///   u_i = (z_i >> 40) / 2^23 − 1, exactly representable, in [-1, 1).
public enum ParityRecipe {
    public static func fnv1a64(_ text: String) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return h
    }

    /// u in [-1, 1) for flat indices 0..<count.
    public static func uniform(_ key: String, count: Int) -> [Double] {
        let seed = fnv1a64(key)
        return (0..<count).map { i in
            var z = seed &+ UInt64(i + 1) &* 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z = z ^ (z >> 31)
            return Double(z >> 40) / Double(1 << 23) - 1
        }
    }

    /// scripts/reference/trecvit.py `recipe_offset_scale`: per Flax leaf of the official TRecViT tree.
    public static func trecvitOffsetScale(_ key: String, _ shape: [Int]) -> (offset: Double, scale: Double) {
        let parts = key.split(separator: "/").map(String.init)
        let leaf = parts.last ?? key, module = parts.count > 1 ? parts[parts.count - 2] : ""
        if key.hasSuffix("rg_lru/a_param") { return (-2, 1.5) }
        if key.hasSuffix("temporal_pre_norm/scale") { return (0, 0.25) }
        if leaf == "scale" { return (1, 0.25) }
        if leaf == "pos_embedding" || leaf == "cls" { return (0, 0.5) }
        if leaf == "bias" || leaf == "b" { return (0, 0.2) }
        if module == "conv_1d" && leaf == "w" { return (0, 0.5) }
        let fanIn: Int
        if leaf == "w" { fanIn = shape[1] }
        else if module == "out" { fanIn = shape[0] * shape[1] }
        else if shape.count == 5 { fanIn = shape.dropLast().reduce(1, *) }
        else { fanIn = shape[0] }
        return (0, (3.0 / Double(fanIn)).squareRoot())
    }

    /// TRecViT weights: float32(offset + scale · u) per key.
    public static func trecvitValues(_ key: String, _ shape: [Int]) -> [Float] {
        let (offset, scale) = trecvitOffsetScale(key, shape)
        return uniform(key, count: shape.reduce(1, *)).map { Float(offset + scale * $0) }
    }

    /// A video [b, t, h, w, 3] in [0, 1): (u + 1) / 2 from the key "video".
    public static func videoValues(count: Int) -> [Float] {
        uniform("video", count: count).map { Float(($0 + 1) / 2) }
    }
}
