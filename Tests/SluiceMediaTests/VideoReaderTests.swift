// VideoReader over the shared media files: frame counts, timestamps, rotation.

import Foundation
import XCTest
import SluiceTestSupport
@testable import SluiceMedia

final class VideoReaderTests: XCTestCase {
    /// Every listed video decodes to exactly videos.json's decoded_frames (the ffmpeg CLI's count), with
    /// consecutive indices and non-decreasing PTS; clean files end without error.
    func testDecodedFrameCountsMatchVideosJSON() throws {
        let entries = try VideoMedia.entries()
        var checked = 0
        for entry in entries {
            guard let expected = Int(entry.decoded_frames) else { continue }
            let path = try VideoMedia.file(entry.path)
            let (frames, error) = try decodeAll(path)
            print("VIDEOCOUNT \(entry.path): \(frames.count) frames (expected \(expected)), error: \(error.map { "\($0)" } ?? "none")")
            XCTAssertEqual(frames.count, expected, entry.path)
            XCTAssertEqual(frames.map(\.index), Array(0..<frames.count), "\(entry.path): indices")
            // Damaged files (decode_errors) may output a late frame out of order (box.mp4's last one).
            for (a, b) in zip(frames, frames.dropFirst()) where b.pts < a.pts && entry.decode_errors.isEmpty {
                XCTFail("\(entry.path): PTS goes back from \(a.pts) to \(b.pts) at frame \(b.index)")
                break
            }
            if let first = frames.first { XCTAssertTrue(first.isKeyframe, "\(entry.path): first frame is a keyframe") }
            if entry.path.contains("broken") {
                XCTAssertNotNil(error, "\(entry.path): damage must be reported")
            } else if entry.path != "video/box.mp4" {  // box.mp4 has a damaged slice header (ffmpeg reports it too)
                XCTAssertNil(error, "\(entry.path): \(error.map { "\($0)" } ?? "")")
            }
            checked += 1
        }
        XCTAssertGreaterThan(checked, 15)
    }

    /// The four phone clips come out upright: same size and pixels as the ffmpeg CLI's autorotated output
    /// (bound: mean |diff| ≤ 0.5 grey levels, the same libswscale conversion on both sides).
    func testRotatedPhoneClipsMatchFFmpegAutorotate() throws {
        for (name, rotation) in [("video_0.mov", 0), ("video_90.mov", 90), ("video_180.mov", 180), ("video_270.mov", 270)] {
            let path = try VideoMedia.file("video/\(name)")
            let reader = try VideoReader(path: path)
            XCTAssertEqual(reader.info.rotation, rotation, name)
            let frames = Array(reader.frames())
            XCTAssertNil(reader.finalError)
            XCTAssertEqual(frames.count, 3)
            let (w, h) = rotation % 180 == 0 ? (568, 320) : (320, 568)
            let reference = try ffmpegFrames(path, width: w, height: h)
            XCTAssertEqual(reference.count, frames.count, name)
            for (frame, expected) in zip(frames, reference) {
                XCTAssertEqual(frame.image.width, w, name)
                XCTAssertEqual(frame.image.height, h, name)
                let mad = meanAbsoluteDifference(frame.image.pixels, expected)
                print("VIDEOROT \(name) frame \(frame.index): mean |Sluice - ffmpeg| = \(mad)")
                XCTAssertLessThanOrEqual(mad, 0.5, "\(name) frame \(frame.index)")
            }
        }
    }

    /// One generated landscape source stored four ways (pixels turned, display matrix 0/90/180/270 turning them
    /// back): all four come out upright and equal to the source within JPEG-level tolerance
    /// (mean |diff| ≤ 2 grey levels; re-encoded with x264 at crf 12, so only compression noise differs).
    func testGeneratedRotationsComeOutUprightAndEqual() throws {
        let folder = try makeTemporaryFolder("rotation")
        defer { try? FileManager.default.removeItem(at: folder) }
        let source = folder.appendingPathComponent("source.mp4")
        try generateClip(source, seconds: 0.4, size: "192x108", rate: 10,
                         ["-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv444p"])
        // A display matrix turning R clockwise: store the frames turned R counter-clockwise.
        let turns = [0: "null", 90: "transpose=cclock", 180: "hflip,vflip", 270: "transpose=clock"]
        var uprights: [Int: [VideoFrame]] = [:]
        for (rotation, filter) in turns.sorted(by: { $0.key < $1.key }) {
            let clip = folder.appendingPathComponent("r\(rotation).mp4")
            try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", "-i", source.path, "-vf", filter,
                                   "-c:v", "libx264", "-crf", "12", "-pix_fmt", "yuv444p", clip.path])
            try setMP4Rotation(clip, clockwise: rotation)
            let reader = try VideoReader(path: clip.path)
            XCTAssertEqual(reader.info.rotation, rotation, "generated rotate=\(rotation)")
            uprights[rotation] = Array(reader.frames())
            XCTAssertNil(reader.finalError)
        }
        let base = uprights[0]!
        XCTAssertEqual(base.count, 4)
        for rotation in [90, 180, 270] {
            let frames = uprights[rotation]!
            XCTAssertEqual(frames.count, base.count)
            for (frame, reference) in zip(frames, base) {
                XCTAssertEqual(frame.image.width, 192)
                XCTAssertEqual(frame.image.height, 108)
                guard frame.image.width == 192, frame.image.height == 108 else { continue }
                let mad = meanAbsoluteDifference(frame.image.pixels, reference.image.pixels)
                print("VIDEOROT generated rotate=\(rotation) frame \(frame.index): mean |diff| vs unrotated = \(mad)")
                XCTAssertLessThanOrEqual(mad, 2.0)
            }
        }
    }

    /// fire2.mp4 (variable frame rate, rotated 180) at 5 fps: for each tick k·0.2 s before the end of the last
    /// frame, the frame whose PTS is nearest the tick (earlier on a tie), computed from a full decode.
    func testFPSSamplingOnVariableRateVideoPicksNearestFrames() throws {
        let path = try VideoMedia.file("video/fire2.mp4")
        let (all, error) = try decodeAll(path)
        XCTAssertNil(error)
        XCTAssertEqual(all.count, 25)
        let intervals = zip(all, all.dropFirst()).map { $1.pts - $0.pts }
        XCTAssertGreaterThan((intervals.max() ?? 0) - (intervals.min() ?? 0), 0.005, "fire2.mp4 is variable rate")
        let end = all.last!.pts + all.last!.duration
        var expected: [Int] = []
        var k = 0
        while Double(k) * 0.2 < end {
            let t = Double(k) * 0.2
            var best = 0
            for (i, frame) in all.enumerated() where abs(frame.pts - t) < abs(all[best].pts - t) { best = i }
            expected.append(all[best].index)
            k += 1
        }
        let reader = try VideoReader(path: path, options: .init(size: .size(width: 64, height: 36)))
        XCTAssertEqual(reader.info.rotation, 180)
        let sampled = Array(reader.frames(.fps(5)))
        XCTAssertNil(reader.finalError)
        print("VIDEOFPS fire2 ticks=\(expected.count) expected=\(expected) got=\(sampled.map(\.index))")
        XCTAssertEqual(sampled.map(\.index), expected)
        XCTAssertEqual(sampled.map(\.pts), expected.map { all[$0].pts })
        XCTAssertTrue(sampled.allSatisfy { $0.image.width == 64 && $0.image.height == 36 })
    }

    /// Readers scaling to an odd width (swscale then changes its context's flags at init) in two threads
    /// at once give exactly the frames one reader gives alone: every frame keeps the colour matrix.
    func testConcurrentReadersScalingToAnOddWidthGiveTheSameFrames() throws {
        let video = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path
        @Sendable func read() throws -> [[UInt8]] {
            let reader = try VideoReader(path: video, options: VideoReaderOptions(size: .size(width: 455, height: 256), threads: 1))
            return reader.frames(.everyNth(4)).map(\.image.pixels)
        }
        let alone = try read()
        XCTAssertEqual(alone.count, 30)
        for _ in 0..<3 {
            let results = UnsafeSendableBox<[[[UInt8]]]>([[], []])
            DispatchQueue.concurrentPerform(iterations: 2) { i in
                let frames = try! read()
                results.lock.lock(); results.value[i] = frames; results.lock.unlock()
            }
            for frames in results.value {
                XCTAssertEqual(frames.count, alone.count)
                for (index, (got, want)) in zip(frames, alone).enumerated() where got != want {
                    let worst = zip(got, want).map { abs(Int($0) - Int($1)) }.max() ?? 0
                    XCTFail("frame \(index * 4) differs by up to \(worst) grey levels")
                }
            }
        }
    }
}

/// A value several threads write under its lock.
final class UnsafeSendableBox<Value>: @unchecked Sendable {
    let lock = NSLock()
    var value: Value
    init(_ value: Value) { self.value = value }
}
