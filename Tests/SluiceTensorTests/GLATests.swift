import Foundation
import XCTest
import SluiceTensor

/// The gate kernel of the GLA scans (the scans themselves are checked against the step-by-step recurrence
/// in Tests/SluiceModelsTests/ViGTests.swift).
final class GLATests: XCTestCase {
    /// logsigmoid(z) / 16 against a float64 reference from z = −100 to 100, including 0, tiny and huge
    /// logits: relative error within a few float32 ulps, down to results of 1e-30 (below that, z > 68, the
    /// decay exp(g) is 1 in float32 whatever g is; FastMath.exp stops at e^−87).
    func testLogSigmoidGatesMatchFloat64() {
        var logits: [Float] = [0, 1e-30, -1e-30, 1e-6, -1e-6, 0.5, -0.5, 87, -87, 88.5, -88.5, 100, -100]
        logits += (0...20000).map { Float($0) / 100 - 100 }
        var gates = logits
        gates.withUnsafeMutableBufferPointer { GLA.logSigmoidGates($0.baseAddress!, count: $0.count, normalizer: 16) }
        var worst: Double = 0, worstAt: Float = 0
        for (z, g) in zip(logits, gates) {
            let x = Double(z)
            let expected = (min(x, 0) - log1p(exp(-abs(x)))) / 16
            let error = abs(Double(g) - expected) / max(abs(expected), 1e-30)
            if error > worst { worst = error; worstAt = z }
        }
        print("GLA.logSigmoidGates: max relative error \(worst) at z = \(worstAt)")
        XCTAssertLessThanOrEqual(worst, 1e-6, "worst at z = \(worstAt)")
        // Gates are log decays: never positive.
        XCTAssertTrue(gates.allSatisfy { $0 <= 0 })
    }
}
