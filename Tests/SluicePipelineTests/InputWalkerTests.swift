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

    /// A folder named in a `list:` file gives all its images, as an `images:` source does (it used to
    /// give only the first one: the two others of a three-photo folder were silently skipped).
    func testAListNamingAFolderExpandsToAllItsImagesInOrder() throws {
        let root = try makeTree()
        defer { try? FileManager.default.removeItem(at: root) }
        let list = root.appendingPathComponent("inputs.txt")
        try "# photos\nsub\n\(root.appendingPathComponent("b.jpg").path)\nSub2\n".write(to: list, atomically: true, encoding: .utf8)
        let items = try InputWalker.readList(list.path)
        let expected = InputWalker.expand([root.appendingPathComponent("sub").path, root.appendingPathComponent("b.jpg").path,
                                           root.appendingPathComponent("Sub2").path])
        XCTAssertEqual(items, expected)
        XCTAssertEqual(items.map { String($0.path.dropFirst(root.path.count + 1)) },
                       ["sub/deeper/y.jpg", "sub/z.jpeg", "b.jpg", "Sub2/x.png"], "a nested folder, a file, a folder")
    }

    /// Two inputs with the same file name in different folders get different artefacts; the same input
    /// always gets the same one (so a resumed run finds it).
    func testArtefactNamesAreUniqueAndStablePerInput() {
        let a = OverlaySink.path(for: "/data/day1/clip.mp4", in: "/out")
        let b = OverlaySink.path(for: "/data/day2/clip.mp4", in: "/out")
        XCTAssertNotEqual(a, b)
        XCTAssertEqual(a, OverlaySink.path(for: "/data/day1/clip.mp4", in: "/out"))
        XCTAssertEqual(a, OverlaySink.path(for: "/data/day1/../day1/clip.mp4", in: "/out"), "the same file, spelled otherwise")
        XCTAssertTrue(a.hasPrefix("/out/clip.") && a.hasSuffix(".overlay.mp4"), a)
        XCTAssertNotEqual(OverlaySink.maskPath(for: "/data/day1/p.jpg", frameIndex: nil, in: "/out"),
                          OverlaySink.maskPath(for: "/data/day2/p.jpg", frameIndex: nil, in: "/out"))
        XCTAssertNotEqual(OverlaySink.maskPath(for: "/data/day1/clip.mp4", frameIndex: 3, in: "/out"),
                          OverlaySink.maskPath(for: "/data/day1/clip.mp4", frameIndex: 4, in: "/out"))
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
