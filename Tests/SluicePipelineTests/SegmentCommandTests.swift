import Foundation
import XCTest
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor
import SluiceTestSupport

/// `sluice segment` end to end with the full-size UperNet-HorNet-T GF on seeded random weights (parity
/// with the reference is UperNetTests' job; this checks what a user gets): masks at each picture's own
/// size in ADE20K colours, overlays, JSONL with areas and COCO RLE, CSV, per-item errors, resumption.
final class SegmentCommandTests: XCTestCase {
    static let model = "upernet_hornet_tiny_gf"

    static func writeWeights(to url: URL) throws { try RandomWeights.write(model: model, seed: 11, to: url) }

    func testSegmentWritesMasksOverlaysRecordsAndResumes() throws {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-segment-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: root) }
        let inputs = root.appendingPathComponent("in")
        try fm.createDirectory(at: inputs, withIntermediateDirectories: true)
        for name in ["chelsea.png", "coffee.png"] {
            try fm.copyItem(at: TestResources.repository.appendingPathComponent("assets/images/\(name)"),
                            to: inputs.appendingPathComponent(name))
        }
        try fm.copyItem(at: TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures/bad/truncated.jpg"),
                        to: inputs.appendingPathComponent("broken.jpg"))
        // A thin panorama: rescaled to 2048x13, below the model's 32-pixel minimum, so padded for the pass.
        let thin = RGBImage(width: 1600, height: 10, pixels: (0..<(1600 * 10 * 3)).map { UInt8(truncatingIfNeeded: $0 * 7) })
        try PNGEncoding.writeRGB(thin, path: inputs.appendingPathComponent("thin.png").path)
        let weights = root.appendingPathComponent("w.safetensors")
        try Self.writeWeights(to: weights)
        let out = root.appendingPathComponent("out")
        let home = root.appendingPathComponent("home")
        let arguments = ["segment", inputs.path, "--model", Self.model, "--weights", weights.path, "--out", out.path,
                         "--mode", "whole", "--rle", "--top-k", "3"]
        let result = try SluiceCLI.run(arguments, home: home)
        XCTAssertEqual(result.status, 0, result.stderr)

        let lines = try String(contentsOf: out.appendingPathComponent("segments.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8)) }
        XCTAssertEqual(records.map { ($0.source as NSString).lastPathComponent }, ["broken.jpg", "chelsea.png", "coffee.png", "thin.png"])
        XCTAssertNotNil(records[0].error)
        XCTAssertNil(records[0].mask)
        let decoder = ImageDecoder()
        for record in records.dropFirst() {
            XCTAssertNil(record.error, record.source)
            let mask = try XCTUnwrap(record.mask, record.source)
            let picture = try decoder.decode(contentsOf: URL(fileURLWithPath: record.source))
            // At the picture's own size, classes covering it exactly, each with its RLE.
            XCTAssertEqual(mask.width, picture.width); XCTAssertEqual(mask.height, picture.height)
            XCTAssertEqual(mask.classes.map(\.pixels).reduce(0, +), picture.width * picture.height)
            XCTAssertEqual(mask.classes.map(\.pixels), mask.classes.map(\.pixels).sorted(by: >))
            for area in mask.classes {
                let rle = try XCTUnwrap(area.rle)
                XCTAssertEqual(rle.area, area.pixels)
                XCTAssertEqual(rle.height, picture.height); XCTAssertEqual(rle.width, picture.width)
                XCTAssertEqual(area.label, LabelSet.ade20k.labels[area.index])
            }
            // The palette PNG: each pixel's colour is its class's ADE20K colour, and the RLEs say where.
            let file = try XCTUnwrap(mask.file)
            let png = try decoder.decode(contentsOf: URL(fileURLWithPath: file))
            XCTAssertEqual(png.width, picture.width); XCTAssertEqual(png.height, picture.height)
            let top = mask.classes[0]
            let where_ = try XCTUnwrap(top.rle).decode()
            let first = try XCTUnwrap(where_.firstIndex(of: true))
            let p = png[first % picture.width, first / picture.width]
            XCTAssertEqual(RGBColor(p.r, p.g, p.b), Palette.ade20k[top.index])
            // The overlay: the picture, blended.
            let overlay = out.appendingPathComponent("overlays")
                .appendingPathComponent(((file as NSString).lastPathComponent as NSString).deletingPathExtension + ".overlay.png")
            let drawn = try decoder.decode(contentsOf: overlay)
            XCTAssertEqual(drawn.width, picture.width); XCTAssertEqual(drawn.height, picture.height)
            XCTAssertNotEqual(drawn.pixels, picture.pixels)
        }
        let csv = try String(contentsOf: out.appendingPathComponent("segments.csv"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 5)
        XCTAssertTrue(csv[0].hasPrefix("source,frame_index,pts,model,error,width,height,mask_file,class_1,label_1,fraction_1"), String(csv[0]))
        XCTAssertTrue(fm.fileExists(atPath: out.appendingPathComponent("segment.yaml").path))

        // The same command again: the job is done, nothing is recomputed or written twice.
        let again = try SluiceCLI.run(arguments, home: home)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("this run 0 items"), again.stderr)
        let relines = try String(contentsOf: out.appendingPathComponent("segments.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(relines, lines)

        // A classifier is refused with one line.
        let wrong = try SluiceCLI.run(["segment", inputs.path, "--model", "efficientnet_lite0", "--out", out.path], home: home)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stderr.contains("not semantic segmentation"), wrong.stderr)
    }

    func testSegmentingVideoFramesWritesAnOverlayVideo() throws {
        let fm = FileManager.default
        let root = URL(fileURLWithPath: "/tmp").appendingPathComponent("sluice-segment-video-\(UUID().uuidString)")
        defer { try? fm.removeItem(at: root) }
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        let weights = root.appendingPathComponent("w.safetensors")
        try Self.writeWeights(to: weights)
        let video = TestResources.repository.appendingPathComponent("assets/videos/dog.mp4").path
        let out = root.appendingPathComponent("out")
        let result = try SluiceCLI.run(["segment", video, "--fps", "0.5", "--model", Self.model, "--weights", weights.path,
                                        "--out", out.path, "--mode", "whole"], home: root.appendingPathComponent("home"))
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = try String(contentsOf: out.appendingPathComponent("segments.jsonl"), encoding: .utf8).split(separator: "\n")
        let records = try lines.map { try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8)) }
        XCTAssertGreaterThanOrEqual(records.count, 2)
        XCTAssertEqual(records.map(\.frameIndex), records.map(\.frameIndex).sorted { ($0 ?? 0) < ($1 ?? 0) })
        for record in records {
            XCTAssertNil(record.error)
            let mask = try XCTUnwrap(record.mask)
            XCTAssertTrue(fm.fileExists(atPath: try XCTUnwrap(mask.file)))
        }
        let overlay = OverlaySink.path(for: video, in: out.appendingPathComponent("overlays").path)
        let facts = VideoProbe.probe(overlay, decode: true)
        XCTAssertNil(facts.error, "\(facts.error as Any)")
        XCTAssertEqual(facts.info?.width, records[0].mask?.width)
        XCTAssertEqual(facts.decodedFrames, Set(records.compactMap(\.pts)).count)
    }
}
