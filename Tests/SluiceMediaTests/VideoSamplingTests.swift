// Sampling policies and exact seeking, on clips generated with the ffmpeg CLI (small, low resolution).

import Foundation
import XCTest
import SluiceTensor
@testable import SluiceMedia

final class VideoSamplingTests: XCTestCase {
    /// Exact seek returns the frame (index, PTS, pixels) a decode from the start gives for the first PTS ≥ t.
    private func checkExactSeek(_ path: String, label: String, seed: UInt64) throws {
        let (all, error) = try decodeAll(path, options: VideoReaderOptions())
        XCTAssertNil(error)
        XCTAssertGreaterThan(all.count, 100)
        let end = all.last!.pts
        var generator = SplitMix64(seed: seed)
        let reader = try VideoReader(path: path)
        var keyframeStarts = 0
        for _ in 0..<20 {
            let t = Double.random(in: 0..<end, using: &generator)
            guard let expected = all.first(where: { $0.pts >= t - 1e-6 }) else { continue }
            guard let frame = try reader.frame(at: t) else { XCTFail("\(label): no frame at \(t)"); continue }
            if expected.isKeyframe { keyframeStarts += 1 }
            XCTAssertEqual(frame.index, expected.index, "\(label) t=\(t)")
            XCTAssertEqual(frame.pts, expected.pts, accuracy: 1e-9, "\(label) t=\(t)")
            XCTAssertTrue(frame.image == expected.image, "\(label) t=\(t): pixels differ from the decode from the start")
        }
        print("VIDEOSEEK \(label): 20 seeks over \(all.count) frames, \(keyframeStarts) landed on keyframes")
        // Seeking beyond the end finds nothing; seeking to 0 gives frame 0; reading goes on after a seek.
        XCTAssertNil(try reader.frame(at: end + 10))
        XCTAssertEqual(try reader.frame(at: 0)?.index, 0)
        XCTAssertEqual(try reader.nextFrame()?.index, 1)
    }

    func testExactSeekLongGOPH264() throws {
        let folder = try makeTemporaryFolder("seek264")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("gop250.mp4")
        try generateClip(clip, seconds: 12, size: "128x72", rate: 25,
                         ["-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "250", "-keyint_min", "250",
                          "-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        try checkExactSeek(clip.path, label: "h264 -g 250", seed: 42)
    }

    func testExactSeekVP9() throws {
        let folder = try makeTemporaryFolder("seekvp9")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("vp9.webm")
        try generateClip(clip, seconds: 8, size: "128x72", rate: 25,
                         ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "300k",
                          "-g", "100", "-pix_fmt", "yuv420p"])
        try checkExactSeek(clip.path, label: "vp9 -g 100", seed: 7)
    }

    func testEveryNthTimeRangeAndUniform() throws {
        let folder = try makeTemporaryFolder("sampling")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("clip.mp4")
        try generateClip(clip, seconds: 4, size: "96x64", rate: 25,
                         ["-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p"])
        let (all, _) = try decodeAll(clip.path)
        XCTAssertEqual(all.count, 100)

        let every = Array(try VideoReader(path: clip.path, options: .init(size: .none)).frames(.everyNth(7)))
        XCTAssertEqual(every.map(\.index), Array(stride(from: 0, to: 100, by: 7)))

        // [1.3, 2.5): frames 33 (1.32 s) ... 62 (2.48 s), found by seeking.
        let reader = try VideoReader(path: clip.path, options: .init(size: .size(width: 32, height: 32)))
        let range = Array(reader.frames(.timeRange(start: 1.3, end: 2.5)))
        XCTAssertNil(reader.finalError)
        XCTAssertEqual(range.map(\.index), Array(33..<63))
        XCTAssertEqual(range.first?.pts ?? 0, 1.32, accuracy: 1e-9)
        XCTAssertTrue(range.allSatisfy { $0.image.width == 32 && $0.image.height == 32 })

        // 8 frames at the centres of 8 slices of 4 s: ticks 0.25, 0.75, ... → frames 6 (0.24 s, nearer than 0.28), ...
        let uniform = Array(try VideoReader(path: clip.path, options: .init(size: .none)).frames(.uniform(count: 8)))
        let expected = (0..<8).map { i -> Int in
            let t = (Double(i) + 0.5) * 4.0 / 8
            return all.min(by: { abs($0.pts - t) < abs($1.pts - t) })!.index
        }
        XCTAssertEqual(uniform.map(\.index), expected)

        // Bad parameters are typed errors.
        let bad = try VideoReader(path: clip.path)
        XCTAssertEqual(Array(bad.frames(.fps(0))).count, 0)
        guard case .invalidArgument? = bad.finalError else { return XCTFail("fps 0 accepted: \(String(describing: bad.finalError))") }
    }

    /// no_duration.webm has no duration in its header: uniform sampling measures it with a packet scan.
    func testUniformSamplingWithoutHeaderDuration() throws {
        let path = try VideoMedia.file("video/no_duration.webm")
        let (all, error) = try decodeAll(path)
        XCTAssertNil(error)
        XCTAssertEqual(all.count, 74)
        let reader = try VideoReader(path: path, options: .init(size: .size(width: 64, height: 36)))
        XCTAssertNil(reader.info.duration)
        let duration = try XCTUnwrap(try reader.measuredDuration())
        XCTAssertEqual(duration, all.last!.pts + all.last!.duration, accuracy: 0.07)
        let frames = Array(reader.frames(.uniform(count: 5)))
        XCTAssertNil(reader.finalError)
        let expected = (0..<5).map { i -> Int in
            let t = (Double(i) + 0.5) * duration / 5
            return all.min(by: { abs($0.pts - t) < abs($1.pts - t) })!.index
        }
        print("VIDEOUNIFORM no_duration.webm duration=\(duration) expected=\(expected) got=\(frames.map(\.index))")
        XCTAssertEqual(frames.map(\.index), expected)
    }

    /// Iteration holds a fixed number of frames: reading a clip at 1 fps keeps no frame beyond the current ones
    /// (checked structurally: the sequence is lazy and the reader's held slots are reused).
    func testFPSSamplingStreamsLazily() throws {
        let folder = try makeTemporaryFolder("lazy")
        defer { try? FileManager.default.removeItem(at: folder) }
        let clip = folder.appendingPathComponent("clip.mp4")
        try generateClip(clip, seconds: 6, size: "96x64", rate: 30,
                         ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        let reader = try VideoReader(path: clip.path, options: .init(size: .size(width: 16, height: 16)))
        var iterator = reader.frames(.fps(1)).makeIterator()
        let first = iterator.next()
        XCTAssertEqual(first?.index, 0)
        // Only what the nearest-frame decision needed has been decoded (frame 0 and one look-ahead frame).
        XCTAssertLessThanOrEqual(reader.decodedFrameCount, 2)
        var indices = [first!.index]
        while let frame = iterator.next() { indices.append(frame.index) }
        XCTAssertEqual(indices, [0, 30, 60, 90, 120, 150])
    }
}
