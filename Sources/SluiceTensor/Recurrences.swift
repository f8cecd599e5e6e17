/// Per-channel recurrences over time for streaming video models (TRecViT's temporal blocks), one
/// sequence per row: the kernels walk a short run of frames in order for every row (token), rows split
/// over `Parallel.threads`. Each row's arithmetic is the same whichever thread runs it.
public enum Recurrences {
    /// A causal depthwise conv over time, width `taps`, continued from `tail` (the previous `taps − 1`
    /// inputs, oldest first, [taps − 1][rows, channels]): for frame f,
    ///   out_f = bias + w[taps−1]·x_f + Σ_{j < taps−1} w[j]·tail[j],
    /// then the window slides (tail drops its oldest input and takes x_f). Where `restart[f]` the tail is
    /// zeroed first: nothing before a segment start reaches the conv. `input` and `output` are
    /// [frames][rows, channels]; `weights` [taps, channels].
    public static func causalConv(frames: Int, rows: Int, channels: Int, taps: Int, restart: [Bool],
                                  input: UnsafePointer<Float>, tail: UnsafeMutablePointer<Float>,
                                  weights: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                                  output: UnsafeMutablePointer<Float>) {
        let lane = rows * channels
        let box = UnsafeSendable((input, tail, weights, bias, output))
        Parallel.forEachChunk(rows, minChunk: 16) { range in
            let (input, tail, w, b, output) = box.value
            let current = w + (taps - 1) * channels
            for row in range {
                let offset = row * channels
                for f in 0..<frames {
                    let x = input + f * lane + offset, o = output + f * lane + offset
                    if restart[f] {
                        for tap in 0..<(taps - 1) { (tail + tap * lane + offset).update(repeating: 0, count: channels) }
                    }
                    for c in 0..<channels { o[c] = b[c] + current[c] * x[c] }
                    for tap in 0..<(taps - 1) {
                        let past = tail + tap * lane + offset, wt = w + tap * channels
                        for c in 0..<channels { o[c] += wt[c] * past[c] }
                    }
                    for tap in 0..<(taps - 1) {
                        let to = tail + tap * lane + offset
                        if tap + 1 < taps - 1 {
                            to.update(from: tail + (tap + 1) * lane + offset, count: channels)
                        } else {
                            to.update(from: x, count: channels)
                        }
                    }
                }
            }
        }
    }

    /// The real-valued RG-LRU (Griffin) continued from `state` [rows, channels], then gated: for frame f,
    ///   log a = −rate · gateA;  h = a·h + √(1 − a²)·(gateX·x), or h = gateX·x where `restart[f]`;
    ///   out_f = h ⊙ y_f.
    /// `x`, `gateX`, `gateA`, `y` and `output` are [frames][rows, channels]; `rate` [channels]
    /// (8·softplus(Λ)). √(1 − a²) takes a² as a·a.
    public static func rgLRU(frames: Int, rows: Int, channels: Int, restart: [Bool], state: UnsafeMutablePointer<Float>,
                             x: UnsafePointer<Float>, gateX: UnsafePointer<Float>, gateA: UnsafePointer<Float>,
                             rate: UnsafePointer<Float>, y: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
        let lane = rows * channels
        let box = UnsafeSendable((state, x, gateX, gateA, rate, y, output))
        Parallel.forEachChunk(rows, minChunk: 16) { range in
            let (state, x, gateX, gateA, rate, y, output) = box.value
            for row in range {
                let h = state + row * channels
                for f in 0..<frames {
                    let base = f * lane + row * channels
                    let (xf, gx, ga, yf, o) = (x + base, gateX + base, gateA + base, y + base, output + base)
                    if restart[f] {
                        for c in 0..<channels { h[c] = xf[c] * gx[c]; o[c] = h[c] * yf[c] }
                        continue
                    }
                    var c = 0
                    while c + 8 <= channels {
                        let a = FastMath.exp(-load(rate + c) * load(ga + c))
                        let next = a * load(h + c) + load(xf + c) * load(gx + c) * (1 - a * a).squareRoot()
                        store(next, h + c)
                        store(next * load(yf + c), o + c)
                        c += 8
                    }
                    while c < channels {
                        let a = FastMath.exp(-rate[c] * ga[c])
                        h[c] = a * h[c] + xf[c] * gx[c] * (1 - a * a).squareRoot()
                        o[c] = h[c] * yf[c]
                        c += 1
                    }
                }
            }
        }
    }
}

@inline(__always) func load(_ p: UnsafePointer<Float>) -> SIMD8<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Float>.self)
}

@inline(__always) func load(_ p: UnsafeMutablePointer<Float>) -> SIMD8<Float> { load(UnsafePointer(p)) }

@inline(__always) func store(_ v: SIMD8<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD8<Float>.self)
}

extension Softmax {
    /// Softmax of each of `rows` rows of `count` values in place, max-subtracted (one thread: callers
    /// run it inside their own parallel loops). Eight lanes at a time: the max and the sum are
    /// reductions, which the compiler keeps scalar.
    public static func rows(_ data: UnsafeMutablePointer<Float>, rows: Int, count: Int) {
        for row in 0..<rows {
            let r = data + row * count
            var lanes = SIMD8<Float>(repeating: -.infinity)
            var j = 0
            while j + 8 <= count {
                let v = load(r + j)
                lanes = lanes.replacing(with: v, where: v .> lanes)
                j += 8
            }
            var m = lanes.max()
            while j < count { m = max(m, r[j]); j += 1 }
            let shift = SIMD8<Float>(repeating: m)
            var sums = SIMD8<Float>()
            j = 0
            while j + 8 <= count {
                let e = FastMath.exp(load(r + j) - shift)
                store(e, r + j)
                sums += e
                j += 8
            }
            var sum = sums.sum()
            while j < count { r[j] = FastMath.exp(r[j] - m); sum += r[j]; j += 1 }
            let inv = 1 / sum
            for k in 0..<count { r[k] *= inv }
        }
    }
}
