import Foundation
import XCTest
import SluiceTestSupport

/// End-to-end runs of the `sluice` binary built beside this test bundle, over real photos mixed with
/// bad inputs: each bad file becomes one record with a clear error and nothing else is lost.
final class ClassifyCommandTests: XCTestCase {
    /// A world-readable folder of good photos and bad files (from the media test fixtures).
    func makeInputs() throws -> URL {
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-classify-\(UUID().uuidString)")
        let fm = FileManager.default
        try fm.createDirectory(at: root.appendingPathComponent("good"), withIntermediateDirectories: true)
        try fm.createDirectory(at: root.appendingPathComponent("bad"), withIntermediateDirectories: true)
        for name in ["chelsea.png", "squirrel_cls.jpg", "coffee.png"] {
            try fm.copyItem(at: TestResources.repository.appendingPathComponent("assets/images/\(name)"),
                            to: root.appendingPathComponent("good/\(name)"))
        }
        let bad = TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures/bad")
        for name in ["truncated.jpg", "bad_crc_idat.png", "text.jpg", "empty.jpg"] {
            try fm.copyItem(at: bad.appendingPathComponent(name), to: root.appendingPathComponent("bad/\(name)"))
        }
        try fm.setAttributes([.posixPermissions: 0o777], ofItemAtPath: root.path)
        return root
    }

    func records(_ jsonl: String) throws -> [[String: Any]] {
        try jsonl.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
    }

    func testBadFilesBecomeErrorRecordsAndTheRunGoesOn() throws {
        let weights = try TestResources.lite0Weights().path
        let root = try makeInputs()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("out.jsonl").path
        let result = try SluiceCLI.run(["classify", root.path, "--weights", weights, "--top-k", "3", "--batch", "2", "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try records(String(contentsOfFile: out, encoding: .utf8))
        let sources = rows.map { ($0["source"] as! String).replacingOccurrences(of: root.path + "/", with: "") }
        XCTAssertEqual(sources, ["bad/bad_crc_idat.png", "bad/empty.jpg", "bad/text.jpg", "bad/truncated.jpg",
                                 "good/chelsea.png", "good/coffee.png", "good/squirrel_cls.jpg"])
        for row in rows[0..<4] {
            let error = row["error"] as? String
            XCTAssertNotNil(error, "\(row)")
            XCTAssertTrue(error?.contains(row["source"] as! String) ?? false, "error names the file: \(error ?? "")")
            XCTAssertNil(row["top_k"])
        }
        XCTAssertTrue((rows[1]["error"] as! String).contains("empty"), "\(rows[1])")
        XCTAssertTrue((rows[3]["error"] as! String).lowercased().contains("truncat")
                      || (rows[3]["error"] as! String).lowercased().contains("premature"), "\(rows[3])")
        let top1 = rows[4...].map { (($0["top_k"] as! [[String: Any]])[0]["index"] as! Int) }
        XCTAssertTrue((281...285).contains(top1[0]), "cat top-1 \(top1[0])")
        XCTAssertEqual(top1[1], 967, "coffee top-1 is espresso")
        XCTAssertEqual(top1[2], 335, "fox squirrel")
        XCTAssertTrue(result.stderr.contains("classified 7 images with efficientnet_lite0: 4 failed"), result.stderr)

        let strict = try SluiceCLI.run(["classify", root.path, "--weights", weights, "--strict", "--out", out])
        XCTAssertNotEqual(strict.status, 0, "--strict fails a run with failures")
    }

    func testCSVOutputIsAFlatViewOfTheSameRecords() throws {
        let weights = try TestResources.lite0Weights().path
        let root = try makeInputs()
        defer { try? FileManager.default.removeItem(at: root) }
        let out = root.appendingPathComponent("out.csv").path
        let result = try SluiceCLI.run(["classify", root.appendingPathComponent("good").path, "--weights", weights,
                              "--top-k", "2", "--out", out])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "source,frame_index,pts,model,error,index_1,label_1,score_1,index_2,label_2,score_2")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[2].contains(",967,espresso,"), String(lines[2]))
    }

    func testUnreadableDirectoryIsOneErrorRecord() throws {
        let root = try makeInputs()
        let weights = try TestResources.lite0Weights(readableByAnyoneIn: root).path
        defer {
            try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: root.appendingPathComponent("locked").path)
            try? FileManager.default.removeItem(at: root)
        }
        let locked = root.appendingPathComponent("locked")
        try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: root.appendingPathComponent("good/coffee.png"),
                                         to: locked.appendingPathComponent("coffee.png"))
        try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: locked.path)
        // Root reads any directory, so as root the command runs as the unprivileged user `nobody`.
        let user: String? = getuid() == 0 ? "65534" : nil
        let out = root.appendingPathComponent("locked-out.jsonl").path
        let result = try SluiceCLI.run(["classify", root.appendingPathComponent("good").path, locked.path,
                              "--weights", weights, "--out", out], as: user)
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try records(String(contentsOfFile: out, encoding: .utf8))
        XCTAssertEqual(rows.count, 4)
        let last = rows[3]
        XCTAssertEqual(last["source"] as? String, locked.path)
        XCTAssertTrue((last["error"] as? String ?? "").contains("cannot list directory"), "\(last)")
        XCTAssertTrue(rows[0..<3].allSatisfy { $0["error"] is NSNull }, "\(rows)")
    }

    func testUnknownModelAndMissingWeightsFailTheCommandWithOneLine() throws {
        let unknown = try SluiceCLI.run(["classify", "/tmp", "--model", "no_such_model"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown model 'no_such_model'"), unknown.stderr)
        let missing = try SluiceCLI.run(["classify", "/tmp", "--weights", "/nonexistent/w.pth"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("/nonexistent/w.pth"), missing.stderr)
    }
}
