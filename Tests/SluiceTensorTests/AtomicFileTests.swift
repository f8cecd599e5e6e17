import Foundation
import XCTest
import SluiceTensor

final class AtomicFileTests: XCTestCase {
    func testReplacesWholeOrNotAtAll() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let target = folder.appendingPathComponent("out.jsonl")
        try Data("old\n".utf8).write(to: target)

        struct Stop: Error {}
        XCTAssertThrowsError(try AtomicFile.write(target) { temporary in
            XCTAssertEqual(temporary.deletingLastPathComponent().path, folder.path, "same folder, same file system")
            XCTAssertEqual(temporary.pathExtension, "jsonl")
            try Data("half".utf8).write(to: temporary)
            throw Stop()
        })
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "old\n", "a failed write keeps the old file")

        try AtomicFile.write(target) { try Data("new\n".utf8).write(to: $0) }
        XCTAssertEqual(try String(contentsOf: target, encoding: .utf8), "new\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["out.jsonl"], "no temporary left")
    }
}
