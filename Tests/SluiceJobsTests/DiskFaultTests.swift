import Foundation
import XCTest
import SluiceTestSupport

/// The output disk fills up while a run writes its sink files (RLIMIT_FSIZE through `prlimit`: every
/// write past the limit fails with EFBIG, as on a full disk): the run says which file and why in one
/// line, the sink files keep their old contents with no temporary left beside them, the committed
/// results stay in the job store, and the same command with room to write produces the whole files.
final class DiskFaultTests: XCTestCase {
    func testAFullDiskDuringSinkExportLeavesTheFilesAsTheyWereAndKeepsTheResults() throws {
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-disk-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: root) }
        let images = root.appendingPathComponent("images"), out = root.appendingPathComponent("out")
        let home = root.appendingPathComponent("home")
        for folder in [images, out, home] { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) }
        let photos = try FileManager.default.contentsOfDirectory(atPath: TestResources.repository.appendingPathComponent("assets/images").path).sorted()
        for copy in 0..<8 {
            for photo in photos {
                try FileManager.default.createSymbolicLink(at: images.appendingPathComponent("\(copy)_\(photo)"),
                                                           withDestinationURL: TestResources.repository.appendingPathComponent("assets/images/\(photo)"))
            }
        }
        let pipeline = root.appendingPathComponent("p.yaml")
        try """
            name: disk-full
            source: { images: images }
            stages:
              - model: efficientnet_lite0
                weights: \(try TestResources.lite0Weights().path)
              - topk: 100
            sink: { jsonl: out/r.jsonl, csv: out/r.csv }
            """.write(to: pipeline, atomically: true, encoding: .utf8)
        let jsonl = out.appendingPathComponent("r.jsonl"), csv = out.appendingPathComponent("r.csv")

        let first = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(first.status, 0, first.output)
        let whole = (try Data(contentsOf: jsonl), try Data(contentsOf: csv))
        XCTAssertGreaterThan(whole.0.count, 200_000, "the JSONL sink must outgrow the limit below")
        for file in [jsonl, csv] { try Data("old\n".utf8).write(to: file) }

        let full = try SluiceCLI.run(["run", pipeline.path], home: home, fileSizeLimit: 100 * 1024)
        XCTAssertEqual(full.status, 1, full.output)
        let last = full.stderr.split(separator: "\n").last.map(String.init) ?? ""
        XCTAssertTrue(last.hasPrefix("sluice: error: \(out.path)/r."), last)
        XCTAssertTrue(last.hasSuffix(": cannot write: File too large; the file was left as it was"), last)
        XCTAssertEqual(try String(contentsOf: jsonl, encoding: .utf8), "old\n")
        XCTAssertEqual(try String(contentsOf: csv, encoding: .utf8), "old\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted(), ["r.csv", "r.jsonl"],
                       "no temporary left behind")

        let shown = try SluiceCLI.run(["jobs", "list"], home: home)
        XCTAssertTrue(shown.output.contains("48 done"), shown.output)
        let again = try SluiceCLI.run(["run", pipeline.path], home: home)
        XCTAssertEqual(again.status, 0, again.output)
        XCTAssertEqual(try Data(contentsOf: jsonl), whole.0, "the committed records, whole and once")
        XCTAssertEqual(try Data(contentsOf: csv), whole.1)
    }
}
