import COpenBLAS

/// Every matrix product in Sluice goes through OpenBLAS `cblas_sgemm` (row-major).
public enum BLAS {
    /// C[M,N] = alpha * A[M,K] * op(B) + beta * C, where op(B) is B[K,N], or B[N,K] transposed
    /// when `transposeB` (the layout of PyTorch linear and 1x1-conv weights).
    @inline(__always)
    public static func gemm(m: Int, n: Int, k: Int,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            alpha: Float = 1, beta: Float = 0) {
        guard m > 0, n > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// C = A * op(B) + bias, then `activation`, computed in tiles of rows (or of columns when there are
    /// few rows) spread over `Parallel.threads`, each tile finished (bias, activation) right after its
    /// product, while it is still in cache. OpenBLAS itself runs single-threaded inside each tile (see `Parallel.configure`).
    public static func gemm(m: Int, n: Int, k: Int,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            bias: UnsafePointer<Float>?, activation: Activation) {
        guard m > 0, n > 0 else { return }
        let threads = Parallel.threads
        // About 256 KiB of C per tile keeps the tile in L2 between the product and its epilogue; at
        // least 128 rows, because OpenBLAS packs the weights again for every tile.
        let rowsForCache = max(128, (65536 / n) & ~15)
        let splitRows = m >= 32 * threads || m >= 2 * rowsForCache || threads == 1 || n < 64 * threads
        let a = UnsafeSendable(a), b = UnsafeSendable(b), c = UnsafeSendable(c), bias = UnsafeSendable(bias)
        if splitRows {
            let tileRows = min(rowsForCache, max(16, (m + threads - 1) / threads))
            let tiles = (m + tileRows - 1) / tileRows
            Parallel.forEachChunk(tiles) { range in
                for tile in range {
                    let row0 = tile * tileRows, rows = min(tileRows, m - row0)
                    tileProduct(rows: rows, columns: n, k: k, a: a.value + row0 * lda, lda: lda,
                                b: b.value, ldb: ldb, transposeB: transposeB, c: c.value + row0 * ldc, ldc: ldc,
                                bias: bias.value, activation: activation)
                }
            }
        } else {
            // Few rows, many outputs (a classifier head, a short token sequence): split the columns.
            let tileColumns = ((n + threads - 1) / threads + 15) & ~15
            let tiles = (n + tileColumns - 1) / tileColumns
            Parallel.forEachChunk(tiles) { range in
                for tile in range {
                    let column0 = tile * tileColumns, columns = min(tileColumns, n - column0)
                    let bTile = transposeB ? b.value + column0 * ldb : b.value + column0
                    tileProduct(rows: m, columns: columns, k: k, a: a.value, lda: lda,
                                b: bTile, ldb: ldb, transposeB: transposeB, c: c.value + column0, ldc: ldc,
                                bias: bias.value.map { $0 + column0 }, activation: activation)
                }
            }
        }
    }

    @inline(__always)
    static func tileProduct(rows: Int, columns: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transposeB: Bool,
                            c: UnsafeMutablePointer<Float>, ldc: Int,
                            bias: UnsafePointer<Float>?, activation: Activation) {
        // Start C at the bias (or zero) and accumulate with beta = 1: OpenBLAS's own beta = 0 pass
        // costs more than this inline fill (measured 7% of EfficientNet-Lite0).
        for row in 0..<rows {
            let r = c + row * ldc
            if let bias { for j in 0..<columns { r[j] = bias[j] } } else { for j in 0..<columns { r[j] = 0 } }
        }
        gemm(m: rows, n: columns, k: k, a: a, lda: lda, b: b, ldb: ldb, transposeB: transposeB, c: c, ldc: ldc,
             beta: 1)
        if activation != .identity {
            for row in 0..<rows { activation.apply(c + row * ldc, count: columns) }
        }
    }
}

/// A fully connected layer: y = x W^T + b, with W stored as PyTorch does ([out, in]).
public struct Linear: Sendable {
    public var weight: Tensor   // [out, in]
    public var bias: Tensor?    // [out]
    public init(weight: Tensor, bias: Tensor?) {
        precondition(weight.rank == 2, "linear weight must be [out, in], got \(weight.shape)")
        if let bias { precondition(bias.shape == [weight.shape[0]], "bias \(bias.shape) does not fit \(weight.shape)") }
        self.weight = weight
        self.bias = bias
    }
    public var inFeatures: Int { weight.shape[1] }
    public var outFeatures: Int { weight.shape[0] }

    /// Applies the layer to the last axis of `x` and then `activation`.
    public func callAsFunction(_ x: Tensor, activation: Activation = .identity) -> Tensor {
        precondition(x.shape.last == inFeatures, "linear expects last dim \(inFeatures), got \(x.shape)")
        let rows = x.count / inFeatures
        var outShape = x.shape
        outShape[outShape.count - 1] = outFeatures
        return Tensor(uninitialized: outShape) { out in
            x.data.withUnsafeBufferPointer { xp in
                weight.data.withUnsafeBufferPointer { wp in
                    withOptionalPointer(bias?.data) { bp in
                        BLAS.gemm(m: rows, n: outFeatures, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                                  b: wp.baseAddress!, ldb: inFeatures, transposeB: true,
                                  c: out.baseAddress!, ldc: outFeatures, bias: bp, activation: activation)
                    }
                }
            }
        }
    }
}

/// Calls `body` with a pointer to `values`' storage, or nil when there are none.
@inline(__always)
func withOptionalPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
    guard let values else { return try body(nil) }
    return try values.withUnsafeBufferPointer { try body($0.baseAddress!) }
}
