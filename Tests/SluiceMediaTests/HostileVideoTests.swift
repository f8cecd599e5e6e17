// Video headers that claim huge frames or a billion frames: refused from the header under the documented
// limit (VideoReaderOptions.maxPixels, 2^26 by default), or streamed with the claim never used to size
// anything. The inputs are made here from a generated clip by patching one header field.

import Foundation
import XCTest
@testable import SluiceMedia

final class HostileVideoTests: XCTestCase {
    /// A 40-byte Y4M header announcing 10 000 x 10 000 frames is refused when it opens.
    func testHeaderClaimingHugeFramesIsRefusedWhenItOpens() throws {
        let folder = try makeTemporaryFolder("hostile-video")
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = folder.appendingPathComponent("huge.y4m")
        try Data("YUV4MPEG2 W10000 H10000 F25:1 Ip A1:1 C420jpeg\nFRAME\n".utf8 + [UInt8](repeating: 16, count: 4096))
            .write(to: file)
        XCTAssertThrowsError(try VideoReader(path: file.path)) { error in
            XCTAssertEqual(error as? VideoError, .tooLarge(file: file.path, width: 10_000, height: 10_000, maxPixels: 1 << 26))
            XCTAssertEqual("\(error)", "\(file.path): video frames are 10000x10000 pixels, more than the limit of 67108864")
        }
    }

    /// A legal clip decodes under the default limit and is refused under a lower one, before any frame.
    func testTheLimitIsTheReadersOption() throws {
        let folder = try makeTemporaryFolder("hostile-video")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("clip.mp4")
        try generateClip(clip, seconds: 0.2, size: "640x360", ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        XCTAssertEqual(try decodeAll(clip.path).frames.count, 5)
        XCTAssertThrowsError(try VideoReader(path: clip.path, options: .init(maxPixels: 640 * 360 - 1))) { error in
            XCTAssertEqual(error as? VideoError, .tooLarge(file: clip.path, width: 640, height: 360, maxPixels: 640 * 360 - 1))
        }
    }

    /// An MP4 whose time-to-sample table claims 10^9 frames: the claim is reported, never used to size
    /// anything; the 50 real frames stream and the run ends with one line giving both counts. One whose
    /// sample-size table claims 10^9 entries is refused by FFmpeg's own check when it opens.
    func testBillionFrameClaimsAreNeverTrusted() throws {
        let folder = try makeTemporaryFolder("hostile-video")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("clip.mp4")
        try generateClip(clip, seconds: 2, size: "96x64",
                         ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        let original = try Data(contentsOf: clip)
        // stts: version/flags, entry count, then (sample count, delta); stsz: version/flags, sample size, sample count.
        let claimsFrames = try patchBox("stts", fieldOffset: 8, to: 1_000_000_000, in: original, writing: folder, "stts.mp4")
        let claimsSamples = try patchBox("stsz", fieldOffset: 8, to: 1_000_000_000, in: original, writing: folder, "stsz.mp4")

        let reader = try VideoReader(path: claimsFrames.path, options: .init(size: .size(width: 32, height: 32)))
        XCTAssertEqual(reader.info.frameCount, 1_000_000_000)
        var frames = 0
        for _ in reader.frames() { frames += 1 }
        XCTAssertEqual(frames, 50)
        XCTAssertEqual(reader.finalError, .partial(decodedFrames: 50, error: .truncated(
            file: claimsFrames.path, detail: "the index lists 1000000000 video packets, the file ends after 50")))

        XCTAssertThrowsError(try VideoReader(path: claimsSamples.path)) { error in
            XCTAssertEqual(error as? VideoError,
                           .cannotOpen(file: claimsSamples.path, reason: "Invalid data found when processing input"))
        }
    }

    /// Writes `data` with the big-endian UInt32 at `fieldOffset` bytes into the first `box`'s payload replaced.
    private func patchBox(_ box: String, fieldOffset: Int, to value: UInt32, in data: Data, writing folder: URL,
                          _ name: String) throws -> URL {
        let bytes = [UInt8](data)
        let tag = [UInt8](box.utf8)
        guard let at = (0..<(bytes.count - 4)).first(where: { Array(bytes[$0..<($0 + 4)]) == tag }) else {
            throw XCTSkip("no \(box) box in the generated clip")
        }
        var patched = bytes
        let field = at + 4 + fieldOffset
        for i in 0..<4 { patched[field + i] = UInt8(truncatingIfNeeded: value >> (24 - 8 * UInt32(i))) }
        let url = folder.appendingPathComponent(name)
        try Data(patched).write(to: url)
        return url
    }
}
