import Foundation
import XCTest
import SluiceTestSupport
import SluicePipeline

/// The CLI's outputs on the bundled data equal those of commit 059dbf8, the last before the contracts
/// refactor (Fixtures/outputs-059dbf8, made by scripts/reference/cli_outputs.sh). Deterministic runs
/// (batch 1) must be byte-identical; pipeline runs batch dynamically, so their batch composition, and
/// with it OpenBLAS's last bits, depend on timing: every field must be equal but the scores, which must
/// agree to 1e-5 (the old binary itself varies by ~1e-6 from run to run). The goldens were made on a Zen 3
/// machine, where OpenBLAS runs its Haswell kernels; on a CPU with AVX-512 it picks others whose sums
/// differ in the last bits, so the runs here ask for the Haswell kernels (OPENBLAS_CORETYPE).
final class OutputsUnchangedTests: XCTestCase {
    let repository = TestResources.repository
    let goldenKernels = ["OPENBLAS_CORETYPE": "Haswell"]
    var golden: URL { repository.appendingPathComponent("Tests/SluiceJobsTests/Fixtures/outputs-059dbf8") }

    func normalised(_ text: String) -> String {
        text.replacingOccurrences(of: repository.path + "/", with: "<repo>/")
    }

    func importedHome() throws -> URL {
        let weights = try TestResources.lite0Weights()
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-outputs-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: home) }
        let imported = try SluiceCLI.run(["models", "import", weights.path, "--model", "efficientnet_lite0"], home: home)
        XCTAssertEqual(imported.status, 0, imported.output)
        return home
    }

    func expected(_ name: String) throws -> String {
        try String(contentsOf: golden.appendingPathComponent(name), encoding: .utf8)
    }

    func testClassifyOutputsAreByteIdentical() throws {
        let home = try importedHome()
        let images = repository.appendingPathComponent("assets/images").path
        let videos = repository.appendingPathComponent("assets/videos").path
        let jsonl = try SluiceCLI.run(["classify", images, "--top-k", "5", "--batch", "1", "--threads", "1"], home: home,
                                     environment: goldenKernels)
        XCTAssertEqual(jsonl.status, 0, jsonl.stderr)
        XCTAssertEqual(normalised(jsonl.stdout), try expected("classify-images.jsonl"))

        let csv = home.appendingPathComponent("c.csv")
        let csvRun = try SluiceCLI.run(["classify", images, "--top-k", "3", "--batch", "1", "--threads", "1",
                                        "--out", csv.path], home: home, environment: goldenKernels)
        XCTAssertEqual(csvRun.status, 0, csvRun.stderr)
        XCTAssertEqual(normalised(try String(contentsOf: csv, encoding: .utf8)), try expected("classify-images.csv"))

        let frames = try SluiceCLI.run(["classify", videos, "--fps", "2", "--top-k", "2", "--batch", "1", "--threads", "1"],
                                       home: home, environment: goldenKernels)
        XCTAssertEqual(frames.status, 0, frames.stderr)
        XCTAssertEqual(normalised(frames.stdout), try expected("classify-video.jsonl"))
    }

    func testInferOutputIsByteIdentical() throws {
        let weights = try TestResources.lite0Weights()
        let output = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-infer-\(UUID().uuidString).npy")
        addTeardownBlock { try? FileManager.default.removeItem(at: output) }
        let input = repository.appendingPathComponent("Tests/SluiceModelsTests/Fixtures/efficientnet_lite0/input.npy")
        let run = try SluiceCLI.run(["infer", "--model", "efficientnet_lite0", "--weights", weights.path,
                                     "--input", input.path, "--output", output.path, "--threads", "1"],
                                    environment: goldenKernels)
        XCTAssertEqual(run.status, 0, run.output)
        XCTAssertEqual(try Data(contentsOf: output), try Data(contentsOf: golden.appendingPathComponent("infer-logits.npy")))
    }

    func testPipelineOutputsAreUnchanged() throws {
        let home = try importedHome()
        for name in ["photos-top5", "video-dog-2fps"] {
            let pipeline = repository.appendingPathComponent("pipelines/\(name).yaml")
            let definition = try PipelineDefinition.load(contentsOf: pipeline)
            let run = try SluiceCLI.run(["run", pipeline.path, "--fresh", "--threads", "1"], home: home)
            XCTAssertEqual(run.status, 0, run.output)
            for (path, suffix) in [(definition.jsonl, "jsonl"), (definition.csv, "csv")] {
                let got = normalised(try String(contentsOfFile: try XCTUnwrap(path), encoding: .utf8))
                let want = try expected("run-\(name).\(suffix)")
                assertEqualButScores(got, want, "\(name).\(suffix)")
            }
        }
    }

    /// Equal text once every number with a fractional part of 5+ digits (a score) is taken out; those
    /// numbers equal within 1e-5.
    func assertEqualButScores(_ got: String, _ want: String, _ what: String, file: StaticString = #filePath,
                              line: UInt = #line) {
        let pattern = try! NSRegularExpression(pattern: "[0-9]+\\.[0-9]{5,}(e-?[0-9]+)?")
        func split(_ text: String) -> (String, [Double]) {
            let range = NSRange(text.startIndex..., in: text)
            let numbers = pattern.matches(in: text, range: range).map { Double((text as NSString).substring(with: $0.range))! }
            return (pattern.stringByReplacingMatches(in: text, range: range, withTemplate: "#"), numbers)
        }
        let (gotText, gotNumbers) = split(got), (wantText, wantNumbers) = split(want)
        XCTAssertEqual(gotText, wantText, what, file: file, line: line)
        XCTAssertEqual(gotNumbers.count, wantNumbers.count, what, file: file, line: line)
        for (a, b) in zip(gotNumbers, wantNumbers) {
            XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b)), what, file: file, line: line)
        }
    }
}
