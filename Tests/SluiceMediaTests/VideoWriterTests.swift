// VideoWriter (libx264 MP4), overlays, and probe JSON.

import Foundation
import XCTest
@testable import SluiceMedia

final class VideoWriterTests: XCTestCase {
    private func ffprobeJSON(_ path: String, _ arguments: [String]) throws -> [String: Any] {
        let data = try runTool("ffprobe", ["-v", "error", "-of", "json"] + arguments + [path])
        return try JSONSerialization.jsonObject(with: data) as! [String: Any]
    }

    /// A labelled overlay of a variable-rate source: h264/yuv420p MP4 with moov first, same frame count and
    /// timestamps as the input.
    func testOverlayMP4KeepsFrameCountAndTimestamps() throws {
        let folder = try makeTemporaryFolder("writer")
        defer { try? FileManager.default.removeItem(at: folder) }
        // Variable rate input: 25 fps, then every other frame dropped from 1 s on (setpts keeps the gaps).
        let source = folder.appendingPathComponent("vfr.mkv")
        try generateClip(source, seconds: 2, size: "96x64", rate: 25,
                         ["-vf", "select='lt(t,1)+not(mod(n,2))'", "-fps_mode", "vfr",
                          "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
        let reader = try VideoReader(path: source.path)
        let output = folder.appendingPathComponent("overlay.mp4")
        let writer = try VideoWriter(path: output.path, width: reader.info.displayWidth, height: reader.info.displayHeight,
                                     options: .init(crf: 18, preset: "ultrafast", fps: 25))
        var inputPTS: [Double] = []
        for var frame in reader.frames() {
            frame.image.drawLabel("F\(frame.index) \(String(format: "%.2f", frame.pts))", x: 2, y: 2, scale: 1)
            var mask = [UInt8](repeating: 0, count: frame.image.width * frame.image.height)
            for i in 0..<(mask.count / 4) { mask[i] = 255 }
            frame.image.blendMask(mask, color: .red, opacity: 0.5)
            try writer.append(frame.image, pts: frame.pts)
            inputPTS.append(frame.pts)
        }
        XCTAssertNil(reader.finalError)
        try writer.finish()
        XCTAssertEqual(writer.framesWritten, inputPTS.count)
        XCTAssertEqual(inputPTS.count, 37)  // 25 in the first second + 12 (even n from 26 to 48) in the second

        let streams = try ffprobeJSON(output.path, ["-show_streams", "-select_streams", "v:0"])["streams"] as! [[String: Any]]
        XCTAssertEqual(streams.first?["codec_name"] as? String, "h264")
        XCTAssertEqual(streams.first?["pix_fmt"] as? String, "yuv420p")
        let frames = try ffprobeJSON(output.path, ["-show_frames", "-select_streams", "v:0", "-show_entries", "frame=pts_time"])
        let outputPTS = (frames["frames"] as! [[String: Any]]).compactMap { ($0["pts_time"] as? String).flatMap(Double.init) }
        XCTAssertEqual(outputPTS.count, inputPTS.count)
        for (a, b) in zip(outputPTS, inputPTS) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        // +faststart: the moov box comes before mdat.
        let bytes = [UInt8](try Data(contentsOf: output).prefix(4096))
        let text = String(decoding: bytes.map { $0 < 0x20 || $0 > 0x7E ? 0x2E : $0 }, as: UTF8.self)
        let moov = text.range(of: "moov"), mdat = text.range(of: "mdat")
        XCTAssertNotNil(moov)
        if let moov, let mdat { XCTAssertLessThan(moov.lowerBound, mdat.lowerBound) }
        // And Sluice reads back what it wrote, at the same timestamps.
        let (back, error) = try decodeAll(output.path)
        XCTAssertNil(error)
        XCTAssertEqual(back.count, inputPTS.count)
        for (a, b) in zip(back, inputPTS) { XCTAssertEqual(a.pts, b, accuracy: 1e-4) }
    }

    func testWriterRejectsBadInput() throws {
        let folder = try makeTemporaryFolder("writerbad")
        defer { try? FileManager.default.removeItem(at: folder) }
        let path = folder.appendingPathComponent("odd.mp4").path
        let writer = try VideoWriter(path: path, width: 33, height: 21, options: .init(preset: "ultrafast"))
        XCTAssertEqual(writer.width, 32)  // odd sizes lose their last column/row
        XCTAssertEqual(writer.height, 20)
        let image = RGBImage(width: 33, height: 21, pixels: [UInt8](repeating: 128, count: 33 * 21 * 3))
        try writer.append(image, pts: 0)
        XCTAssertThrowsError(try writer.append(image, pts: 0)) { error in
            guard case .invalidArgument = error as! VideoError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try writer.append(RGBImage(width: 2, height: 2, pixels: [UInt8](repeating: 0, count: 12)), pts: 1))
        try writer.finish()
        XCTAssertEqual(try decodeAll(path).frames.count, 1)
    }

    func testLabelAndMaskPixels() {
        var image = RGBImage(width: 40, height: 20, pixels: [UInt8](repeating: 100, count: 40 * 20 * 3))
        image.drawLabel("I", x: 0, y: 0, scale: 1, color: .white, background: .black)
        // Box is (1·6+1)×9 pixels; "I" row 0 is .###. → columns 2...4 at y=1 (1-pixel padding).
        XCTAssertEqual(image[0, 0].r, 0)
        XCTAssertEqual(image[1, 1].r, 0)
        XCTAssertEqual(image[2, 1].r, 255)
        XCTAssertEqual(image[4, 1].r, 255)
        XCTAssertEqual(image[5, 1].r, 0)
        XCTAssertEqual(image[3, 4].r, 255)   // the stem
        XCTAssertEqual(image[8, 0].r, 100)   // outside the box
        XCTAssertEqual(RGBImage.labelSize("I", scale: 1).width, 7)
        var mask = [UInt8](repeating: 0, count: 40 * 20)
        mask[20 * 40 + 0 - 40] = 255  // (0, 19)
        image.blendMask(mask, color: RGBColor(200, 0, 100), opacity: 0.5)
        XCTAssertEqual(image[0, 19].r, 150)
        XCTAssertEqual(image[0, 19].g, 50)
        XCTAssertEqual(image[0, 19].b, 100)
        XCTAssertEqual(image[1, 19].r, 100)
    }

    /// Probe JSON for a few shared files: headers, decode counts, and a bad file's error in its own object.
    func testProbeJSON() throws {
        let fire = try VideoMedia.file("video/fire2.mp4")
        let noDuration = try VideoMedia.file("video/no_duration.webm")
        let empty = try VideoMedia.file("video/broken/moviepy_result_empty.webm")
        func parse(_ report: VideoProbe.Report) throws -> [String: Any] {
            print("VIDEOPROBE \(report.json)")
            return try JSONSerialization.jsonObject(with: Data(report.json.utf8)) as! [String: Any]
        }
        let a = try parse(VideoProbe.probe(fire))
        XCTAssertEqual(a["container"] as? String, "mov,mp4,m4a,3gp,3g2,mj2")
        XCTAssertEqual(a["codec"] as? String, "h264")
        XCTAssertEqual(a["width"] as? Int, 1280)
        XCTAssertEqual(a["height"] as? Int, 720)
        XCTAssertEqual(a["rotation"] as? Int, 180)
        XCTAssertEqual(a["fps"] as? Double ?? 0, 750000.0 / 71393, accuracy: 1e-6)
        XCTAssertEqual(a["duration"] as? Double ?? 0, 2.38, accuracy: 0.01)
        XCTAssertEqual(a["frames"] as? Int, 25)
        XCTAssertEqual((a["audio"] as? [[String: Any]])?.first?["codec"] as? String, "aac")
        XCTAssertTrue(a["error"] is NSNull)
        XCTAssertNil(a["decoded_frames"])

        let b = try parse(VideoProbe.probe(noDuration, decode: true))
        XCTAssertTrue(b["duration"] is NSNull)
        XCTAssertTrue(b["frames"] is NSNull)
        XCTAssertEqual(b["decoded_frames"] as? Int, 74)
        XCTAssertEqual(b["first_pts"] as? Double, 0)
        XCTAssertEqual((b["decode_errors"] as? [Any])?.count, 0)

        let c = try parse(VideoProbe.probe(empty, decode: true))
        XCTAssertEqual(c["error"] as? String, "\(empty): file is empty")
        XCTAssertEqual(c.count, 2)  // file + error

        let corrupt = try parse(VideoProbe.probe(try VideoMedia.file("video/broken/decord_corrupted.mp4"), decode: true))
        XCTAssertEqual(corrupt["decoded_frames"] as? Int, 49)
        XCTAssertEqual((corrupt["decode_errors"] as? [String])?.count, 1)
    }
}
