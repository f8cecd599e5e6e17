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
                    BLAS.gemm(m: rows, n: outFeatures, k: inFeatures, a: xp.baseAddress!, lda: inFeatures,
                              b: wp.baseAddress!, ldb: inFeatures, transposeB: true,
                              c: out.baseAddress!, ldc: outFeatures)
                }
            }
            Epilogue.apply(out.baseAddress!, rows: rows, columns: outFeatures, bias: bias, activation: activation)
        }
    }
}
