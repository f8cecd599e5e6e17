public enum Pooling {
    /// Mean over H and W of an NHWC tensor: [N, H, W, C] -> [N, C].
    public static func globalAverage(_ x: Tensor) -> Tensor {
        precondition(x.rank == 4, "global average pool expects NHWC, got \(x.shape)")
        let (n, pixels, c) = (x.shape[0], x.shape[1] * x.shape[2], x.shape[3])
        return Tensor(uninitialized: [n, c]) { out in
            x.data.withUnsafeBufferPointer {
                RowKernels.meanPool(images: n, pixels: pixels, channels: c, input: $0.baseAddress!, output: out.baseAddress!)
            }
        }
    }

    public enum Kind: Sendable { case max, average(countIncludePad: Bool) }

    /// Max or average pooling over NHWC windows (PyTorch `MaxPool2d`/`AvgPool2d`, floor mode).
    public static func pool2d(_ x: Tensor, kind: Kind, kernel: (Int, Int), stride: (Int, Int),
                              padding: Padding2D = .zero) -> Tensor {
        precondition(x.rank == 4, "pool2d expects NHWC, got \(x.shape)")
        let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = (h + padding.top + padding.bottom - kernel.0) / stride.0 + 1
        let ow = (w + padding.left + padding.right - kernel.1) / stride.1 + 1
        var out = Tensor(zeros: [n, oh, ow, c])
        x.data.withUnsafeBufferPointer { xp in
            out.data.withUnsafeMutableBufferPointer { op in
                for image in 0..<n {
                    for oy in 0..<oh {
                        for ox in 0..<ow {
                            let dst = op.baseAddress! + ((image * oh + oy) * ow + ox) * c
                            if case .max = kind { for ch in 0..<c { dst[ch] = -.infinity } }
                            for ky in 0..<kernel.0 {
                                let iy = oy * stride.0 - padding.top + ky
                                for kx in 0..<kernel.1 {
                                    let ix = ox * stride.1 - padding.left + kx
                                    let inside = iy >= 0 && iy < h && ix >= 0 && ix < w
                                    guard inside else { continue }
                                    let src = xp.baseAddress! + ((image * h + iy) * w + ix) * c
                                    switch kind {
                                    case .max: for ch in 0..<c { dst[ch] = max(dst[ch], src[ch]) }
                                    case .average: for ch in 0..<c { dst[ch] += src[ch] }
                                    }
                                }
                            }
                            if case .average(let includePad) = kind {
                                let y0 = oy * stride.0 - padding.top, x0 = ox * stride.1 - padding.left
                                let validH = min(y0 + kernel.0, h) - max(y0, 0)
                                let validW = min(x0 + kernel.1, w) - max(x0, 0)
                                let paddedH = min(y0 + kernel.0, h + padding.bottom) - y0
                                let paddedW = min(x0 + kernel.1, w + padding.right) - x0
                                // PyTorch counts padded cells up to the padded border only.
                                let divisor = includePad ? paddedH * paddedW : validH * validW
                                let inv = 1 / Float(divisor)
                                for ch in 0..<c { dst[ch] *= inv }
                            }
                        }
                    }
                }
            }
        }
        return out
    }
}
