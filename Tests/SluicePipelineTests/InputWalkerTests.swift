import Foundation
import XCTest
@testable import SluicePipeline

final class InputWalkerTests: XCTestCase {
    func makeTree() throws -> URL {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-walk-\(UUID().uuidString)")
        for path in ["b.jpg", "a.PNG", "notes.txt", ".hidden.jpg", "sub/z.jpeg", "sub/deeper/y.jpg", "Sub2/x.png"] {
            let url = root.appendingPathComponent(path)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data("x".utf8).write(to: url)
        }
        return root
    }

    func testFoldersAreWalkedRecursivelyInByteOrderKeepingImageFilesOnly() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let items = InputWalker.expand([root.path]).map { String($0.path.dropFirst(root.path.count + 1)) }
        XCTAssertEqual(items, ["Sub2/x.png", "a.PNG", "b.jpg", "sub/deeper/y.jpg", "sub/z.jpeg"])
    }

    func testBrokenSymbolicLinksAreReportedNotSkipped() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createSymbolicLink(atPath: root.appendingPathComponent("c.jpg").path,
                                                   withDestinationPath: root.appendingPathComponent("gone.jpg").path)
        let items = InputWalker.expand([root.path]).filter { $0.path.hasSuffix("/c.jpg") }
        XCTAssertEqual(items, [InputItem(path: root.appendingPathComponent("c.jpg").path, listingError: "broken symbolic link")])
    }

    func testExplicitFilesAreTakenWhateverTheirExtensionAndMissingPathsReported() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let notes = root.appendingPathComponent("notes.txt").path
        let missing = root.appendingPathComponent("missing.jpg").path
        let items = InputWalker.expand([notes, missing])
        XCTAssertEqual(items, [InputItem(path: notes), InputItem(path: missing, listingError: "no such file or directory")])
    }

    func testCSVFieldsAreQuotedPerRFC4180() {
        XCTAssertEqual(CSVSink.quote("plain"), "plain")
        XCTAssertEqual(CSVSink.quote("a, b"), "\"a, b\"")
        XCTAssertEqual(CSVSink.quote("say \"hi\""), "\"say \"\"hi\"\"\"")
        XCTAssertEqual(CSVSink.quote("two\nlines"), "\"two\nlines\"")
    }

    func testRecordsAlwaysCarryTheErrorField() throws {
        let ok = ResultRecord(source: "a.jpg", model: "m", topK: [Prediction(index: 1, label: "x", score: 0.5)])
        let text = String(decoding: try JSONEncoder().encode(ok), as: UTF8.self)
        XCTAssertTrue(text.contains("\"error\":null"), text)
        XCTAssertFalse(text.contains("frame_index"), text)
        let decoded = try JSONDecoder().decode(ResultRecord.self, from: Data(text.utf8))
        XCTAssertEqual(decoded, ok)
    }
}
