import Foundation

public enum Attention {
    /// Multi-head scaled dot-product self-attention over packed projections: `qkv` holds
    /// sequences · length rows of 3 · width (its last axis) with each row's query, key and value side by side (heads of
    /// width / heads columns each); the result is [sequences · length, width] before the output
    /// projection. `keyMask` ([sequences · length], 0 = padding) keeps queries off padded keys.
    /// Sequence-heads are split over threads; each thread reuses one scores buffer.
    public static func selfAttention(packed qkv: Tensor, sequences: Int, length: Int, heads: Int,
                                     keyMask: [Int32]? = nil) -> Tensor {
        let width = qkv.shape.last! / 3, dh = width / heads
        precondition(qkv.data.count == sequences * length * 3 * width && width == heads * dh, "packed qkv shape")
        precondition(keyMask.map { $0.count == sequences * length } ?? true, "key mask length")
        var attended = [Float](repeating: 0, count: sequences * length * width)
        let scale = 1 / Float(dh).squareRoot()
        let mask = keyMask ?? []
        qkv.data.withUnsafeBufferPointer { qkvp in
            attended.withUnsafeMutableBufferPointer { op in
                mask.withUnsafeBufferPointer { mp in
                    // An empty array's buffer may still have an address: whether there is a mask is asked of the mask.
                    let box = UnsafeSendable((qkvp.baseAddress!, op.baseAddress!, keyMask == nil ? nil : mp.baseAddress))
                    Parallel.forEachChunk(sequences * heads) { range in
                        let (qkv, out, mask) = box.value
                        var scores = [Float](repeating: 0, count: length * length)
                        scores.withUnsafeMutableBufferPointer { sp in
                            let s = sp.baseAddress!
                            for task in range {
                                let (sequence, head) = task.quotientAndRemainder(dividingBy: heads)
                                let rows = qkv + sequence * length * 3 * width
                                let q = rows + head * dh, k = rows + width + head * dh, v = rows + 2 * width + head * dh
                                BLAS.gemm(m: length, n: length, k: dh, a: q, lda: 3 * width, b: k, ldb: 3 * width,
                                          transposeB: true, c: s, ldc: length, alpha: scale)
                                if let mask {
                                    let keyMask = mask + sequence * length
                                    for key in 0..<length where keyMask[key] == 0 {
                                        for query in 0..<length { s[query * length + key] = -Float.greatestFiniteMagnitude }
                                    }
                                }
                                Softmax.rows(s, rows: length, count: length)
                                BLAS.gemm(m: length, n: dh, k: length, a: s, lda: length, b: v, ldb: 3 * width,
                                          transposeB: false, c: out + sequence * length * width + head * dh, ldc: width)
                            }
                        }
                    }
                }
            }
        }
        return Tensor(shape: [sequences * length, width], data: attended)
    }
}
