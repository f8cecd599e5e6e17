import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// The float32 parity bound the project holds every kernel to: max |actual - expected| / max |expected|.
let parityBound: Float = 1e-4

let regenerateHint = "run `/usr/bin/python3 scripts/reference/kernels.py` to write Tests/SluiceTensorTests/Fixtures"

struct FixtureError: Error, CustomStringConvertible {
    let description: String
}

/// Reference data written by scripts/reference/kernels.py (PyTorch), bundled as the `Fixtures` resource.
enum Fixtures {
    static func directory() throws -> URL {
        guard let url = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
            throw FixtureError(description: "the Fixtures resource is missing from the test bundle; \(regenerateHint)")
        }
        return url
    }

    /// Loads `<name>.npy`; a missing file is a failure that says how to create it (never a silent skip).
    static func tensor(_ name: String) throws -> Tensor {
        let url = try directory().appendingPathComponent(name + ".npy")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FixtureError(description: "fixture \(name).npy is missing; \(regenerateHint)")
        }
        return try NPY.read(contentsOf: url)
    }

    /// The per-case parameters the reference script recorded.
    static func manifest() throws -> [String: [String: Any]] {
        let url = try directory().appendingPathComponent("manifest.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw FixtureError(description: "fixture manifest.json is missing; \(regenerateHint)")
        }
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        guard let cases = object as? [String: [String: Any]] else {
            throw FixtureError(description: "manifest.json is not an object of cases; \(regenerateHint)")
        }
        return cases
    }

    static func parameters(_ name: String) throws -> [String: Any] {
        guard let params = try manifest()[name] else {
            throw FixtureError(description: "manifest.json has no case \(name); \(regenerateHint)")
        }
        return params
    }
}

/// Fails unless the expected tensor carries signal: a test against all-zero or constant data cannot fail.
func assertNonTrivial(_ expected: Tensor, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let maxAbs = expected.data.reduce(Float(0)) { max($0, abs($1)) }
    XCTAssertGreaterThan(expected.count, 0, "\(label): empty expected tensor", file: file, line: line)
    XCTAssertGreaterThan(maxAbs, 1e-3, "\(label): expected tensor is (near) zero", file: file, line: line)
    let first = expected.data.first ?? 0
    XCTAssertTrue(expected.data.contains { $0 != first }, "\(label): expected tensor is constant", file: file, line: line)
    XCTAssertFalse(expected.data.contains { !$0.isFinite }, "\(label): expected tensor has non-finite values",
                   file: file, line: line)
}

/// Asserts the parity bound, after checking that shapes agree and that the reference is non-trivial.
/// Prints the measured error so a run documents how close each kernel is.
@discardableResult
func assertParity(_ actual: Tensor, _ expected: Tensor, _ label: String, bound: Float = parityBound,
                  file: StaticString = #filePath, line: UInt = #line) -> Float {
    guard actual.shape == expected.shape else {
        XCTFail("\(label): shape \(actual.shape), expected \(expected.shape)", file: file, line: line)
        return .infinity
    }
    assertNonTrivial(expected, label, file: file, line: line)
    let error = Tensor.maxRelativeError(actual, expected)
    print("[parity] \(label): max relative error \(error)")
    XCTAssertLessThanOrEqual(error, bound, "\(label): max relative error \(error) exceeds \(bound)", file: file, line: line)
    return error
}

/// A reproducible pseudo-random tensor (xorshift), values uniform in [-scale, scale).
func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1) -> Tensor {
    var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
    let count = shape.reduce(1, *)
    var values = [Float](repeating: 0, count: count)
    for i in 0..<count {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        values[i] = (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
    return Tensor(shape: shape, data: values)
}

extension Dictionary where Key == String, Value == Any {
    func int2(_ key: String) throws -> (Int, Int) {
        guard let pair = self[key] as? [Int], pair.count == 2 else {
            throw FixtureError(description: "manifest field \(key) is not a pair of ints; \(regenerateHint)")
        }
        return (pair[0], pair[1])
    }

    func flag(_ key: String) -> Bool { self[key] as? Bool ?? false }

    func float(_ key: String) throws -> Float {
        guard let value = self[key] as? Double else {
            throw FixtureError(description: "manifest field \(key) is missing; \(regenerateHint)")
        }
        return Float(value)
    }

    func activation() throws -> Activation {
        let name = self["activation"] as? String ?? "identity"
        guard let activation = Activation(rawValue: name) else {
            throw FixtureError(description: "unknown activation \(name) in manifest")
        }
        return activation
    }
}
