extension Tensor {
    /// In-place elementwise sum with a tensor of the same shape (residual connections).
    public mutating func add(_ other: Tensor) {
        precondition(shape == other.shape, "cannot add \(other.shape) to \(shape)")
        let count = self.count
        data.withUnsafeMutableBufferPointer { dst in
            other.data.withUnsafeBufferPointer { src in
                let d = UnsafeSendable(dst.baseAddress!), s = UnsafeSendable(src.baseAddress!)
                Parallel.forEachChunk(count, minChunk: 1 << 15) { range in
                    for i in range { d.value[i] += s.value[i] }
                }
            }
        }
    }

    /// Index and value of the k largest entries of each row of a [rows, n] tensor, largest first.
    public func topK(_ k: Int) -> [[(index: Int, value: Float)]] {
        let n = shape.last ?? 0
        let rows = n == 0 ? 0 : count / n
        return (0..<rows).map { row in
            let slice = data[(row * n)..<((row + 1) * n)]
            return slice.enumerated()
                .sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }
                .prefix(Swift.max(0, Swift.min(k, n)))
                .map { (index: $0.offset, value: $0.element) }
        }
    }

    /// The index of the largest entry of each row over the last axis (the first of equal maxima, as
    /// torch.argmax), e.g. a class per pixel of [1, H, W, classes] logits.
    public func argmaxLastAxis() -> [Int] {
        let n = Swift.max(shape.last ?? 1, 1)
        let rows = count / n
        var result = [Int](repeating: 0, count: rows)
        data.withUnsafeBufferPointer { x in
            result.withUnsafeMutableBufferPointer { out in
                let (xs, os) = (UnsafeSendable(x.baseAddress!), UnsafeSendable(out.baseAddress!))
                Parallel.forEachChunk(rows, minChunk: 4096) { range in
                    for row in range {
                        let values = xs.value + row * n
                        var best = 0, bestValue = values[0]
                        for k in 1..<n where values[k] > bestValue { best = k; bestValue = values[k] }
                        os.value[row] = best
                    }
                }
            }
        }
        return result
    }
}

extension Tensor {
    /// The items of the leading (batch) axis as separate tensors with a batch axis of 1.
    public func splitBatch() -> [Tensor] {
        let n = shape[0]
        if n == 1 { return [self] }
        let itemCount = count / n
        var itemShape = shape
        itemShape[0] = 1
        return (0..<n).map { i in Tensor(shape: itemShape, data: Array(data[(i * itemCount)..<((i + 1) * itemCount)])) }
    }

    /// Stacks tensors with equal trailing shapes along the leading (batch) axis.
    public init(concatenatingBatch parts: [Tensor]) {
        precondition(!parts.isEmpty, "nothing to concatenate")
        var shape = parts[0].shape
        precondition(parts.allSatisfy { Array($0.shape.dropFirst()) == Array(shape.dropFirst()) },
                     "batch items differ in shape")
        shape[0] = parts.reduce(0) { $0 + $1.shape[0] }
        if parts.count == 1 { self = parts[0]; return }
        self.init(shape: shape, data: parts.flatMap(\.data))
    }
}
