import Foundation
import XCTest
import SluiceTestSupport

/// `sluice run FILE --resume ID` runs the job's stored pipeline (jobs are stored by content), and
/// `sluice jobs list/show/export` describe it.
final class ResumeByIDTests: XCTestCase {
    func testResumeRunsTheStoredPipelineWhateverTheFileSaysNow() throws {
        let weights = try TestResources.lite0Weights()
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-resume-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let home = root.appendingPathComponent("home"), photos = root.appendingPathComponent("photos")
        try FileManager.default.createDirectory(at: photos, withIntermediateDirectories: true)
        let assets = TestResources.repository.appendingPathComponent("assets/images")
        for name in ["chelsea.png", "coffee.png"] {
            try FileManager.default.copyItem(at: assets.appendingPathComponent(name), to: photos.appendingPathComponent(name))
        }
        XCTAssertEqual(try SluiceCLI.run(["models", "import", weights.path, "--model", "efficientnet_lite0"], home: home).status, 0)
        let pipeline = root.appendingPathComponent("p.yaml")
        func write(top: Int, out: String) throws {
            try """
                name: resume-test
                source: { images: photos }
                stages: [{ model: efficientnet_lite0, batch: 2 }, { topk: \(top) }]
                sink: { jsonl: \(out) }
                """.write(to: pipeline, atomically: true, encoding: .utf8)
        }
        try write(top: 2, out: "first.jsonl")
        let first = try SluiceCLI.run(["run", pipeline.path, "--threads", "1"], home: home)
        XCTAssertEqual(first.status, 0, first.output)
        let id = try XCTUnwrap(first.stderr.firstMatch(of: /\(job ([0-9a-f]{16})\)/)?.1).description

        let list = try SluiceCLI.run(["jobs", "list"], home: home)
        XCTAssertEqual(list.status, 0, list.output)
        XCTAssertTrue(list.stdout.contains("\(id)\tresume-test\t2 done, 0 failed, 0 pending of 2\t\(pipeline.path)"), list.stdout)
        let show = try SluiceCLI.run(["jobs", "show", String(id.prefix(6))], home: home)
        XCTAssertTrue(show.stdout.hasPrefix("job \(id) resume-test (\(pipeline.path)): 2 done, 0 failed, 0 pending of 2"), show.stdout)

        // The file changes (another sink, another k); resuming by id still runs what was submitted.
        try write(top: 1, out: "second.jsonl")
        try FileManager.default.removeItem(at: root.appendingPathComponent("first.jsonl"))
        let resumed = try SluiceCLI.run(["run", pipeline.path, "--resume", id, "--threads", "1"], home: home)
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.stderr.contains("already done"), resumed.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("second.jsonl").path))
        let records = try JobsCLI.records(root.appendingPathComponent("first.jsonl"))
        XCTAssertEqual(records.map { $0.topK?.count }, [2, 2])

        let csv = root.appendingPathComponent("export.csv")
        let export = try SluiceCLI.run(["jobs", "export", id, "--out", csv.path, "--top-k", "2"], home: home)
        XCTAssertEqual(export.status, 0, export.output)
        XCTAssertEqual(try String(contentsOf: csv, encoding: .utf8).split(separator: "\n").count, 3)

        let unknown = try SluiceCLI.run(["run", pipeline.path, "--resume", "ffffffffffffffff"], home: home)
        XCTAssertEqual(unknown.status, 1)
        XCTAssertEqual(unknown.stderr, "sluice: error: no job 'ffffffffffffffff' (see `sluice jobs list`)\n")
    }
}
