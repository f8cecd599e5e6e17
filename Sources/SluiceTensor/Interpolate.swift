/// Bilinear resizing of channels-last maps as PyTorch's CPU `F.interpolate(mode='bilinear',
/// align_corners=False)` computes it in float32 (the resize every segmentation head uses): source
/// coordinate (dst + 0.5) · in/out − 0.5, clamped below at 0; neighbours i0 = ⌊src⌋ and min(i0 + 1, in − 1).
public enum Interpolate {
    /// One output coordinate's two source indices and weights.
    public struct Tap: Sendable {
        public var i0: Int, i1: Int, w0: Float, w1: Float
    }

    /// The taps of each output position along one axis.
    public static func taps(from inSize: Int, to outSize: Int) -> [Tap] {
        precondition(inSize > 0 && outSize > 0, "bilinear resize between sizes \(inSize) and \(outSize)")
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { o in
            let source = max(scale * (Float(o) + 0.5) - 0.5, 0)
            let i0 = Int(source)
            let lambda = source - Float(i0)
            return Tap(i0: i0, i1: i0 + (i0 < inSize - 1 ? 1 : 0), w0: 1 - lambda, w1: lambda)
        }
    }

    /// `x` [N, h, w, C] resized to [N, height, width, C].
    public static func bilinear(_ x: Tensor, height: Int, width: Int) -> Tensor {
        precondition(x.rank == 4, "bilinear resize expects NHWC, got \(x.shape)")
        var out = Tensor(uninitialized: [x.shape[0], height, width, x.shape[3]]) { _ in }
        bilinear(x, into: &out)
        return out
    }

    /// Resizes `source` [N, h, w, C] to the height and width of `destination` [N, H, W, D] and writes it
    /// into channels `channelOffset ..< channelOffset + C` there, or adds it to them (`accumulate`).
    /// Equal sizes copy exactly.
    public static func bilinear(_ source: Tensor, into destination: inout Tensor, channelOffset: Int = 0,
                                accumulate: Bool = false) {
        precondition(source.rank == 4 && destination.rank == 4 && source.shape[0] == destination.shape[0],
                     "bilinear resize from \(source.shape) into \(destination.shape)")
        let (n, h, w, c) = (source.shape[0], source.shape[1], source.shape[2], source.shape[3])
        let (oh, ow, d) = (destination.shape[1], destination.shape[2], destination.shape[3])
        precondition(channelOffset >= 0 && channelOffset + c <= d, "channels \(channelOffset)+\(c) exceed \(d)")
        let ys = taps(from: h, to: oh), xs = taps(from: w, to: ow)
        let same = h == oh && w == ow
        source.data.withUnsafeBufferPointer { sp in
            destination.data.withUnsafeMutableBufferPointer { dp in
                let (src, dst) = (UnsafeSendable(sp.baseAddress!), UnsafeSendable(dp.baseAddress! + channelOffset))
                let (ysS, xsS) = (UnsafeSendable(ys), UnsafeSendable(xs))
                Parallel.forEachChunk(n * oh, minChunk: max(1, 4096 / max(1, ow * c))) { rows in
                    for row in rows {
                        let image = row / oh, oy = row % oh
                        let out = dst.value + row * ow * d
                        let plane = src.value + image * h * w * c
                        if same {
                            let line = plane + oy * w * c
                            for ox in 0..<ow {
                                let o = out + ox * d, s = line + ox * c
                                if accumulate { for ch in 0..<c { o[ch] += s[ch] } } else { o.update(from: s, count: c) }
                            }
                            continue
                        }
                        let ty = ysS.value[oy]
                        let top = plane + ty.i0 * w * c, bottom = plane + ty.i1 * w * c
                        for ox in 0..<ow {
                            let tx = xsS.value[ox]
                            let a = top + tx.i0 * c, b = top + tx.i1 * c, e = bottom + tx.i0 * c, f = bottom + tx.i1 * c
                            let o = out + ox * d
                            let (h0, h1, w0, w1) = (ty.w0, ty.w1, tx.w0, tx.w1)
                            if accumulate {
                                for ch in 0..<c { o[ch] += h0 * (w0 * a[ch] + w1 * b[ch]) + h1 * (w0 * e[ch] + w1 * f[ch]) }
                            } else {
                                for ch in 0..<c { o[ch] = h0 * (w0 * a[ch] + w1 * b[ch]) + h1 * (w0 * e[ch] + w1 * f[ch]) }
                            }
                        }
                    }
                }
            }
        }
    }
}

extension Pooling {
    /// PyTorch `AdaptiveAvgPool2d((height, width))` over NHWC: output cell i averages input rows
    /// ⌊i·H/height⌋ ..< ⌈(i+1)·H/height⌉ (bins overlap when the sizes do not divide).
    public static func adaptiveAverage(_ x: Tensor, height oh: Int, width ow: Int) -> Tensor {
        precondition(x.rank == 4, "adaptive average pool expects NHWC, got \(x.shape)")
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        func bins(_ size: Int, _ count: Int) -> [Range<Int>] {
            (0..<count).map { i in (i * size / count)..<(((i + 1) * size + count - 1) / count) }
        }
        let rows = bins(h, oh), columns = bins(w, ow)
        var out = Tensor(zeros: [n, oh, ow, c])
        x.data.withUnsafeBufferPointer { xp in
            out.data.withUnsafeMutableBufferPointer { op in
                for image in 0..<n {
                    for (oy, ry) in rows.enumerated() {
                        for (ox, rx) in columns.enumerated() {
                            let dst = op.baseAddress! + ((image * oh + oy) * ow + ox) * c
                            for iy in ry {
                                for ix in rx {
                                    let src = xp.baseAddress! + ((image * h + iy) * w + ix) * c
                                    for ch in 0..<c { dst[ch] += src[ch] }
                                }
                            }
                            let inv = 1 / Float(ry.count * rx.count)
                            for ch in 0..<c { dst[ch] *= inv }
                        }
                    }
                }
            }
        }
        return out
    }
}
