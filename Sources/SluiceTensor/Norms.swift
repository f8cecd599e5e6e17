/// LayerNorm over the last (channel) axis with biased variance, as PyTorch's `nn.LayerNorm(C)` and the
/// channels-first LayerNorms of ConvNeXt-style models (which normalise the same axis in NHWC).
public struct LayerNorm: Sendable {
    public var weight: Tensor?, bias: Tensor?
    public var eps: Float
    public init(weight: Tensor?, bias: Tensor?, eps: Float) { self.weight = weight; self.bias = bias; self.eps = eps }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let channels = x.shape.last!
        var y = x
        let w = weight?.data, b = bias?.data, eps = eps
        y.data.withUnsafeMutableBufferPointer { p in
            let box = UnsafeSendable(p.baseAddress!)
            Parallel.forEachChunk(p.count / channels, minChunk: 64) { rows in
                for row in rows {
                    let v = box.value + row * channels
                    var mean: Float = 0
                    for c in 0..<channels { mean += v[c] }
                    mean /= Float(channels)
                    var variance: Float = 0
                    for c in 0..<channels { let d = v[c] - mean; variance += d * d }
                    variance /= Float(channels)
                    let inv = 1 / (variance + eps).squareRoot()
                    for c in 0..<channels { v[c] = (v[c] - mean) * inv }
                    if let w { for c in 0..<channels { v[c] *= w[c] } }
                    if let b { for c in 0..<channels { v[c] += b[c] } }
                }
            }
        }
        return y
    }
}

/// RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * weight.
public struct RMSNorm: Sendable {
    public var weight: Tensor?
    public var eps: Float
    public init(weight: Tensor?, eps: Float) { self.weight = weight; self.eps = eps }

    public func callAsFunction(_ x: Tensor) -> Tensor {
        let channels = x.shape.last!
        var y = x
        let w = weight?.data, eps = eps
        y.data.withUnsafeMutableBufferPointer { p in
            let box = UnsafeSendable(p.baseAddress!)
            Parallel.forEachChunk(p.count / channels, minChunk: 64) { rows in
                for row in rows {
                    let v = box.value + row * channels
                    var sumSquares: Float = 0
                    for c in 0..<channels { sumSquares += v[c] * v[c] }
                    let inv = 1 / (sumSquares / Float(channels) + eps).squareRoot()
                    for c in 0..<channels { v[c] *= inv }
                    if let w { for c in 0..<channels { v[c] *= w[c] } }
                }
            }
        }
        return y
    }
}

public enum Softmax {
    /// Softmax over the last axis, max-subtracted for stability.
    public static func lastAxis(_ x: Tensor) -> Tensor {
        let n = x.shape.last!
        var y = x
        y.data.withUnsafeMutableBufferPointer { p in
            let box = UnsafeSendable(p.baseAddress!)
            Parallel.forEachChunk(p.count / n, minChunk: 64) { rows in
                for row in rows {
                    let v = box.value + row * n
                    var m = -Float.infinity
                    for i in 0..<n { m = max(m, v[i]) }
                    var sum: Float = 0
                    for i in 0..<n { v[i] = FastMath.exp(v[i] - m); sum += v[i] }
                    let inv = 1 / sum
                    for i in 0..<n { v[i] *= inv }
                }
            }
        }
        return y
    }
}
