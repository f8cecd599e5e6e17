import Foundation
import XCTest
import SluiceTestSupport
import SluiceModels
import SluiceTensor

/// `sluice models import` then `sluice infer` reproduce the official logits (tensor-level parity).
final class InferCommandTests: XCTestCase {
    func testImportThenInferMatchesReferenceLogits() throws {
        let weights = try TestResources.lite0Weights().path
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-home-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: home) }

        let imported = try SluiceCLI.run(["models", "import", weights, "--model", "efficientnet_lite0"], home: home)
        XCTAssertEqual(imported.status, 0, imported.stderr)
        XCTAssertTrue(imported.stdout.contains("247 tensors"), imported.stdout)
        let card = try JSONSerialization.jsonObject(
            with: Data(contentsOf: home.appendingPathComponent("models/efficientnet_lite0.json"))) as! [String: Any]
        XCTAssertEqual(card["source_format"] as? String, "torchLegacy")

        let fixtures = TestResources.repository.appendingPathComponent("Tests/SluiceModelsTests/Fixtures/efficientnet_lite0")
        let output = home.appendingPathComponent("logits.npy")
        let inferred = try SluiceCLI.run(["infer", "--model", "efficientnet_lite0",
                                          "--input", fixtures.appendingPathComponent("input.npy").path,
                                          "--output", output.path], home: home)
        XCTAssertEqual(inferred.status, 0, inferred.stderr)
        let logits = try NPY.read(contentsOf: output)
        let expected = try NPY.read(contentsOf: fixtures.appendingPathComponent("logits.npy"))
        let error = Tensor.maxRelativeError(logits, expected)
        XCTAssertLessThanOrEqual(error, 1e-4, "sluice infer vs PyTorch: \(error)")
    }

    func testImportRejectsAMismatchedCheckpointListingEveryProblem() throws {
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-home-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let bogus = home.appendingPathComponent("bogus.npy")
        try NPY.write(Tensor(zeros: [2, 2]), to: bogus)
        let result = try SluiceCLI.run(["models", "import", bogus.path, "--model", "efficientnet_lite0"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("problem(s)"), result.stderr)
        XCTAssertTrue(result.stderr.contains("missing _conv_stem.weight [32, 3, 3, 3]"), result.stderr)
        XCTAssertTrue(result.stderr.contains("missing _fc.bias [1000]"), result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "one line")
    }
}
