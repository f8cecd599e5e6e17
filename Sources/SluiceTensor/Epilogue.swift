/// What follows a GEMM or convolution: add a per-column bias, then an activation. Done in one pass
/// over each output row while it is still in cache.
public enum Epilogue {
    public static func apply(_ out: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
                             bias: Tensor?, activation: Activation) {
        if bias == nil && activation == .identity { return }
        let outBox = UnsafeSendable(out)
        let biasValues = bias?.data
        Parallel.forEachChunk(rows, minChunk: max(1, 16384 / max(columns, 1))) { range in
            let out = outBox.value
            for row in range {
                let rowPointer = out + row * columns
                if let biasValues {
                    biasValues.withUnsafeBufferPointer { b in
                        for j in 0..<columns { rowPointer[j] += b[j] }
                    }
                }
                activation.apply(rowPointer, count: columns)
            }
        }
    }
}
