// A float32 tensor: a shape and contiguous row-major storage. Images and feature maps are channels-last
// (NHWC), token sequences are tokens-by-channels, so the last axis is always the contiguous one.

public struct Tensor: Sendable, Equatable {
    public var shape: [Int]
    public var data: [Float]

    public init(shape: [Int], data: [Float]) {
        precondition(shape.reduce(1, *) == data.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.shape = shape
        self.data = data
    }

    /// A zero-filled tensor.
    public init(zeros shape: [Int]) {
        self.init(shape: shape, data: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// A tensor whose storage the caller fills completely through `fill` (no zeroing pass).
    public init(uninitialized shape: [Int], fill: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let count = shape.reduce(1, *)
        self.shape = shape
        self.data = try [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            try fill(buffer)
            initialized = count
        }
    }

    public var count: Int { data.count }
    public var rank: Int { shape.count }

    /// The same values under another shape of equal size; one dimension may be -1.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        var dims = newShape
        if let inferred = dims.firstIndex(of: -1) {
            let known = dims.enumerated().filter { $0.offset != inferred }.map(\.element).reduce(1, *)
            dims[inferred] = known == 0 ? 0 : count / known
        }
        return Tensor(shape: dims, data: data)
    }

    /// Reorders axes (a general transpose). Used once at load time for layout conversion and for
    /// NCHW <-> NHWC at the model boundary; never on a hot path.
    public func permuted(_ axes: [Int]) -> Tensor {
        precondition(axes.sorted() == Array(0..<rank), "permutation \(axes) does not fit rank \(rank)")
        let outShape = axes.map { shape[$0] }
        var inStrides = [Int](repeating: 1, count: rank)
        for axis in stride(from: rank - 2, through: 0, by: -1) { inStrides[axis] = inStrides[axis + 1] * shape[axis + 1] }
        let permutedStrides = axes.map { inStrides[$0] }
        return Tensor(uninitialized: outShape) { out in
            data.withUnsafeBufferPointer { src in
                var index = [Int](repeating: 0, count: rank)
                var offset = 0
                for position in 0..<out.count {
                    out[position] = src[offset]
                    var axis = rank - 1
                    while axis >= 0 {
                        index[axis] += 1
                        offset += permutedStrides[axis]
                        if index[axis] < outShape[axis] { break }
                        offset -= permutedStrides[axis] * outShape[axis]
                        index[axis] = 0
                        axis -= 1
                    }
                }
            }
        }
    }

    /// NCHW (PyTorch) to NHWC (Sluice).
    public func nchwToNHWC() -> Tensor { permuted([0, 2, 3, 1]) }
    /// NHWC (Sluice) to NCHW (PyTorch).
    public func nhwcToNCHW() -> Tensor { permuted([0, 3, 1, 2]) }
}

extension Tensor {
    /// max |a - b| / max |b|: the relative error the parity tests bound (float32: 1e-4).
    public static func maxRelativeError(_ actual: Tensor, _ expected: Tensor) -> Float {
        precondition(actual.shape == expected.shape, "shapes differ: \(actual.shape) vs \(expected.shape)")
        var maxDiff: Float = 0, maxRef: Float = 0
        for i in 0..<actual.count {
            let a = actual.data[i], b = expected.data[i]
            if a.isNaN != b.isNaN { return .infinity }
            maxDiff = max(maxDiff, abs(a - b))
            maxRef = max(maxRef, abs(b))
        }
        return maxDiff / max(maxRef, Float.leastNormalMagnitude)
    }
}
