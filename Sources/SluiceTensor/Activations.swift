import Foundation

/// Elementwise non-linearities, applied in place. Fused into the epilogue of GEMMs and convolutions.
public enum Activation: String, Sendable, CaseIterable {
    case identity, relu, relu6, silu, sigmoid
    /// GELU with the exact erf (PyTorch `nn.GELU()`).
    case gelu
    /// GELU with the tanh approximation (PyTorch `nn.GELU(approximate='tanh')`).
    case geluTanh

    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .identity: return
        case .relu: for i in 0..<count { x[i] = x[i] > 0 ? x[i] : 0 }
        case .relu6: for i in 0..<count { let v = x[i] > 0 ? x[i] : 0; x[i] = v < 6 ? v : 6 }
        case .silu: for i in 0..<count { x[i] = x[i] * FastMath.sigmoid(x[i]) }
        case .sigmoid: for i in 0..<count { x[i] = FastMath.sigmoid(x[i]) }
        case .gelu: for i in 0..<count { x[i] = 0.5 * x[i] * (1 + FastMath.erf(x[i] * 0.70710678118654752)) }
        case .geluTanh:
            for i in 0..<count {
                let v = x[i]
                let inner = 0.7978845608028654 * (v + 0.044715 * v * v * v)
                x[i] = 0.5 * v * (1 + FastMath.tanh(inner))
            }
        }
    }

    public func apply(_ tensor: inout Tensor) {
        let count = tensor.count
        tensor.data.withUnsafeMutableBufferPointer { apply($0.baseAddress!, count: count) }
    }
}

/// Branch-free float32 approximations that LLVM vectorises (libm's expf/tanhf are scalar calls).
public enum FastMath {
    /// exp(x) by Cephes' range reduction and degree-5 polynomial: relative error < 2e-7 on [-87, 88].
    @inline(__always)
    public static func exp(_ x: Float) -> Float {
        var v = x < 88.37626 ? x : 88.37626
        v = v > -87.33654 ? v : -87.33654
        // n = round(v / ln2) with the 1.5*2^23 trick (no slow rounding call).
        let shifted = v * 1.44269504088896341 + 12582912.0
        let n = shifted - 12582912.0
        var r = v - n * 0.693359375
        r = r + n * 2.12194440e-4
        var p: Float = 1.9875691500e-4
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let result = p * r * r + r + 1
        let scale = Float(bitPattern: UInt32(bitPattern: Int32(n) + 127) << 23)
        return result * scale
    }

    /// `exp` on eight lanes at once, the same arithmetic as the scalar version lane by lane (for loops the
    /// compiler does not vectorise by itself: those with reductions, or with several streams).
    @inline(__always)
    public static func exp(_ x: SIMD8<Float>) -> SIMD8<Float> {
        var v = x.replacing(with: 88.37626, where: .!(x .< 88.37626))
        v = v.replacing(with: -87.33654, where: .!(v .> -87.33654))
        let shifted = v * 1.44269504088896341 + 12582912.0
        let n = shifted - 12582912.0
        var r = v - n * 0.693359375
        r = r + n * 2.12194440e-4
        var p = SIMD8<Float>(repeating: 1.9875691500e-4)
        p = p * r + 1.3981999507e-3
        p = p * r + 8.3334519073e-3
        p = p * r + 4.1665795894e-2
        p = p * r + 1.6666665459e-1
        p = p * r + 5.0000001201e-1
        let result = p * r * r + r + 1
        // n is `shifted`'s low mantissa bits (shifted = 1.5·2²³ + n exactly): integer lanes, no per-lane
        // float-to-int conversion (which Swift's generic SIMD conversion does one lane at a time).
        let exponent = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127
        let scale = unsafeBitCast(exponent &<< 23, to: SIMD8<Float>.self)
        return result * scale
    }

    /// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, the approximation PyTorch's vectorised CPU
    /// erf uses) with the polynomial exp, so GELU loops vectorise instead of calling libm's scalar erff.
    @inline(__always)
    public static func erf(_ z: Float) -> Float {
        let a = z < 0 ? -z : z
        let t = 1 / (1 + 0.3275911 * a)
        let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        let e = 1 - poly * exp(-a * a)
        return z < 0 ? -e : e
    }

    @inline(__always)
    public static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    @inline(__always)
    public static func tanh(_ x: Float) -> Float {
        // tanh(x) = 1 - 2 / (exp(2x) + 1); accurate to ~1e-7 absolute and saturates correctly.
        1 - 2 / (exp(2 * x) + 1)
    }
}
