import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// Runs `model` on `input` with each thread count and checks its logits against the reference's:
/// max |a − b| / max |b| ≤ 1e-4 (float32), printing the measured error.
func assertLogitsMatch(_ model: any ImageClassifier, input: Tensor, expected: Tensor, name: String, threads: [Int],
                  file: StaticString = #filePath, line: UInt = #line) {
    defer { Parallel.configure(threads: nil) }
    for count in threads {
        Parallel.configure(threads: count)
        let logits = model(input)
        XCTAssertEqual(logits.shape, expected.shape, name, file: file, line: line)
        let error = Tensor.maxRelativeError(logits, expected)
        print("\(name) parity (\(count) thread(s)): max relative error \(error)")
        XCTAssertLessThanOrEqual(error, 1e-4, "\(name), \(count) thread(s): max relative error \(error)", file: file, line: line)
    }
}
