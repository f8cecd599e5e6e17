// Failure handling: empty, corrupt, truncated, encrypted, non-video and unreachable inputs give typed,
// one-line errors; frames decoded before a failure are kept and the failure is reported as partial.

#if canImport(Glibc)
@preconcurrency import Glibc
#endif
import Foundation
import XCTest
@testable import SluiceMedia

final class VideoErrorTests: XCTestCase {
    private func assertOneLine(_ error: VideoError, names file: String, _ label: String) {
        let text = "\(error)"
        XCTAssertFalse(text.contains("\n"), "\(label): \(text)")
        XCTAssertTrue(text.contains(file), "\(label): \(text) does not name \(file)")
        print("VIDEOERROR \(label): \(text)")
    }

    func testEmptyFileFailsCleanly() throws {
        let path = try VideoMedia.file("video/broken/moviepy_result_empty.webm")
        XCTAssertThrowsError(try VideoReader(path: path)) { error in
            XCTAssertEqual(error as? VideoError, .empty(file: path))
            assertOneLine(error as! VideoError, names: path, "empty")
        }
    }

    func testCorruptFileKeepsFramesAndReportsPartial() throws {
        let path = try VideoMedia.file("video/broken/decord_corrupted.mp4")
        let reader = try VideoReader(path: path, options: .init(size: .size(width: 32, height: 32)))
        let frames = Array(reader.frames())
        XCTAssertEqual(frames.count, 49)
        guard case .partial(let decoded, let underlying)? = reader.finalError else {
            return XCTFail("expected a partial error, got \(String(describing: reader.finalError))")
        }
        XCTAssertEqual(decoded, 49)
        guard case .corruptData(_, let errorCount, let message) = underlying else { return XCTFail("\(underlying)") }
        XCTAssertGreaterThanOrEqual(errorCount, 1)
        XCTAssertTrue(message.contains("Invalid data"), message)  // FFmpeg's av_strerror text
        assertOneLine(reader.finalError!, names: path, "corrupt")
        // The throwing interface delivers the same frames, then throws.
        let again = try VideoReader(path: path, options: .init(size: .none))
        var count = 0
        do {
            while try again.nextFrame() != nil { count += 1 }
            XCTFail("no error thrown")
        } catch {
            XCTAssertEqual(count, 49)
            guard case .partial(49, _) = error else { return XCTFail("\(error)") }
        }
    }

    func testTruncatedFilesKeepTheirFrames() throws {
        let folder = try makeTemporaryFolder("truncated")
        defer { try? FileManager.default.removeItem(at: folder) }
        for (name, arguments) in [("fast.mp4", ["-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart"]),
                                  ("clip.mkv", ["-c:v", "libx264", "-preset", "ultrafast"]),
                                  ("plain.mp4", ["-c:v", "libx264", "-preset", "ultrafast"])] {
            let clip = folder.appendingPathComponent(name)
            try generateClip(clip, seconds: 4, size: "96x64", rate: 25, arguments + ["-pix_fmt", "yuv420p"])
            let data = try Data(contentsOf: clip)
            let cut = folder.appendingPathComponent("cut-" + name)
            try data.prefix(data.count * 6 / 10).write(to: cut)
            do {
                let reader = try VideoReader(path: cut.path, options: .init(size: .none))
                let frames = Array(reader.frames())
                print("VIDEOERROR truncated \(name): \(frames.count) frames, \(reader.finalError.map { "\($0)" } ?? "no error")")
                XCTAssertGreaterThan(frames.count, 0, name)
                XCTAssertLessThan(frames.count, 100, name)
                do {  // the MP4 index says how much is missing; for Matroska the header's duration does
                    guard case .partial(let decoded, .truncated)? = reader.finalError else {
                        XCTFail("\(name): \(String(describing: reader.finalError))"); continue
                    }
                    XCTAssertEqual(decoded, frames.count)
                }
            } catch {
                // moov at the end: nothing to read without the index.
                XCTAssertEqual(name, "plain.mp4", "\(error)")
                guard case .cannotOpen = error else { XCTFail("\(error)"); continue }
                assertOneLine(error, names: cut.path, "truncated \(name)")
            }
        }
    }

    func testNonVideoInputs() throws {
        let folder = try makeTemporaryFolder("nonvideo")
        defer { try? FileManager.default.removeItem(at: folder) }
        // Text.
        let text = folder.appendingPathComponent("notes.mp4")
        try Data("this is not a video\n".utf8).write(to: text)
        XCTAssertThrowsError(try VideoReader(path: text.path)) { error in
            guard case .cannotOpen(_, let reason) = error as! VideoError else { return XCTFail("\(error)") }
            XCTAssertFalse(reason.isEmpty)
            assertOneLine(error as! VideoError, names: text.path, "text")
        }
        // Missing.
        let missing = folder.appendingPathComponent("missing.mp4").path
        XCTAssertThrowsError(try VideoReader(path: missing)) { error in
            XCTAssertEqual(error as? VideoError, .cannotOpen(file: missing, reason: "No such file or directory"))
        }
        // Audio only, and audio with only a cover picture (attached_pic): no video stream.
        let wav = folder.appendingPathComponent("tone.wav")
        try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.5", wav.path])
        XCTAssertThrowsError(try VideoReader(path: wav.path)) { error in
            XCTAssertEqual(error as? VideoError, .noVideoStream(file: wav.path))
        }
        let cover = folder.appendingPathComponent("cover.mp3")
        try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=0.5",
                               "-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04", "-map", "0", "-map", "1",
                               "-c:a", "libmp3lame", "-c:v", "mjpeg", "-frames:v", "1",
                               "-disposition:v:0", "attached_pic", cover.path])
        XCTAssertThrowsError(try VideoReader(path: cover.path)) { error in
            XCTAssertEqual(error as? VideoError, .noVideoStream(file: cover.path))
            assertOneLine(error as! VideoError, names: cover.path, "cover art only")
        }
    }

    func testEncryptedFileIsTyped() throws {
        let folder = try makeTemporaryFolder("encrypted")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("clip.mp4")
        try generateClip(clip, seconds: 1, size: "96x64", rate: 25, ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        let encrypted = folder.appendingPathComponent("cenc.mp4")
        try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", "-i", clip.path, "-c", "copy",
                               "-encryption_scheme", "cenc-aes-ctr",
                               "-encryption_key", "76a6c65c5ea762046bd749a2e632ccbb",
                               "-encryption_kid", "a7e61c373e219033c21091fa607bf3b8", encrypted.path])
        do {
            let reader = try VideoReader(path: encrypted.path, options: .init(size: .none))
            let frames = Array(reader.frames())
            XCTAssertEqual(frames.count, 0)
            XCTAssertEqual(reader.finalError, .encrypted(file: encrypted.path))
        } catch {
            XCTAssertEqual(error, .encrypted(file: encrypted.path))
        }
    }

    /// A server that accepts the connection and never answers: the interrupt callback ends the open after the
    /// reader's deadline instead of hanging.
    func testSilentServerTimesOut() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(listener, 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(listener, 4), 0)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let port = UInt16(bigEndian: address.sin_port)
        let url = "http://127.0.0.1:\(port)/clip.mp4"
        XCTAssertThrowsError(try VideoReader(path: url, options: .init(readTimeout: 1))) { error in
            XCTAssertEqual(error as? VideoError, .timeout(file: url, seconds: 1))
            assertOneLine(error as! VideoError, names: url, "silent server")
        }
    }
}
