import Foundation
import XCTest
import SluiceTestSupport
import SluicePipeline
import SluiceModels

final class PipelineDefinitionTests: XCTestCase {
    func parse(_ text: String) throws -> PipelineDefinition {
        try PipelineDefinition.parse(text, file: "p.yaml", baseDirectory: URL(fileURLWithPath: "/data"))
    }

    func issues(_ text: String) -> [String] {
        do {
            _ = try parse(text)
            XCTFail("expected validation errors")
            return []
        } catch let error as PipelineValidationError {
            return error.issues.map(\.description)
        } catch {
            XCTFail("unexpected \(error)")
            return []
        }
    }

    func testAValidPipelineResolvesPathsAgainstItsFolder() throws {
        let definition = try parse("""
            name: photos
            source: { images: [photos, /abs/more], recursive: false }
            stages:
              - model: efficientnet_lite0
                batch: 4
                weights: w/lite0.pth
              - topk: 3
            sink: { jsonl: out/r.jsonl, csv: out/r.csv }
            """)
        XCTAssertEqual(definition, PipelineDefinition(
            name: "photos", source: .images(paths: ["/data/photos", "/abs/more"], recursive: false),
            model: .init(name: "efficientnet_lite0", weights: "/data/w/lite0.pth", batch: 4),
            postprocessing: Postprocessing(topK: 3),
            jsonl: "/data/out/r.jsonl", csv: "/data/out/r.csv"))
    }

    func testEveryProblemIsReportedWithItsPosition() {
        let found = issues("""
            name: bad
            source: { imagez: photos }
            stages:
              - model: no_such_model
                batch: lots
              - blur: 3
              - topk: 0
            sink: { parquet: out.parquet }
            extra: 1
            """)
        XCTAssertEqual(found, [
            "p.yaml:9:1: pipeline: unknown key 'extra' (allowed: name, source, stages, sink)",
            "p.yaml:2:11: source: unknown key 'imagez' (allowed: images, recursive, list, video, sample)",
            "p.yaml:2:9: source: missing 'images', 'list' or 'video'",
            "p.yaml:4:12: unknown model 'no_such_model' (known: \(ModelRegistry.names.joined(separator: ", ")))",
            "p.yaml:5:12: 'batch' must be an integer, got 'lots'",
            "p.yaml:6:5: unknown stage 'blur' (allowed: model, topk, threshold, rle)",
            "p.yaml:7:11: 'topk' must be in 1...1000, got 0",
            "p.yaml:8:9: sink: unknown key 'parquet' (allowed: jsonl, csv, overlay, overlays, masks)",
            "p.yaml:8:7: sink: name at least one of jsonl, csv",
        ])
    }

    func testMissingSectionsAndWrongTypes() {
        XCTAssertEqual(issues("name: x\n"), [
            "p.yaml:1:1: pipeline: missing 'source' (one of: images, list, video)",
            "p.yaml:1:1: pipeline: missing 'stages' (a list with a model stage)",
            "p.yaml:1:1: pipeline: missing 'sink' (jsonl and/or csv)",
        ])
        XCTAssertEqual(issues("source: photos\nstages: {model: efficientnet_lite0}\nsink: out.jsonl\n"), [
            "p.yaml:1:9: 'source' must be a mapping (images, list or video), got 'photos'",
            "p.yaml:2:9: 'stages' must be a list, got a mapping",
            "p.yaml:3:7: 'sink' must be a mapping with jsonl and/or csv, got 'out.jsonl'",
        ])
    }

    func testVideoSourcesWithEachSamplingPolicy() throws {
        func source(_ yaml: String) throws -> PipelineDefinition.Source {
            try parse("source: \(yaml)\nstages: [{model: efficientnet_lite0}]\nsink: {jsonl: o.jsonl}\n").source
        }
        XCTAssertEqual(try source("{ video: clip.mp4 }"), .videos(paths: ["/data/clip.mp4"], recursive: true, sampling: .all))
        XCTAssertEqual(try source("{ video: [a.mp4, /v], sample: { fps: 2.5 } }"),
                       .videos(paths: ["/data/a.mp4", "/v"], recursive: true, sampling: .fps(2.5)))
        XCTAssertEqual(try source("{ video: v, sample: { every: 10 }, recursive: false }"),
                       .videos(paths: ["/data/v"], recursive: false, sampling: .everyNth(10)))
        XCTAssertEqual(try source("{ video: v, sample: { uniform: 16 } }"), .videos(paths: ["/data/v"], recursive: true, sampling: .uniform(count: 16)))
        XCTAssertEqual(try source("{ video: v, sample: { range: [1.5, 4] } }"),
                       .videos(paths: ["/data/v"], recursive: true, sampling: .timeRange(start: 1.5, end: 4)))
        XCTAssertEqual(try source("{ video: v, sample: all }"), .videos(paths: ["/data/v"], recursive: true, sampling: .all))
        XCTAssertEqual(try source("{ video: v }").media, .video(.all))
        XCTAssertEqual(try source("{ images: v }").media, .image)
    }

    func testStagesCarryBatchingAndPostprocessing() throws {
        let definition = try parse("""
            source: { images: photos }
            stages:
              - model: efficientnet_lite0
                batch: 16
                max_wait_ms: 5
              - topk: 2
              - threshold: 0.25
            sink: { jsonl: o.jsonl }
            """)
        XCTAssertEqual(definition.model, .init(name: "efficientnet_lite0", weights: nil, batch: 16, maxWait: 0.005))
        XCTAssertEqual(definition.postprocessing, Postprocessing(topK: 2, minScore: 0.25))
    }

    func testBadSamplingAndThresholdAreReportedWithPositions() {
        XCTAssertEqual(issues("""
            source: { video: a.mp4, sample: { fps: -1 } }
            stages: [{model: efficientnet_lite0}, {threshold: 2}]
            sink: {jsonl: o.jsonl}
            """), [
            "p.yaml:1:40: 'fps' must be positive, got -1.0",
            "p.yaml:2:51: 'threshold' must be a probability in 0...1, got 2.0",
        ])
        XCTAssertEqual(issues("""
            source: { video: a.mp4, sample: { every: 2, fps: 3, speed: 1 } }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), [
            "p.yaml:1:53: sample: unknown key 'speed' (allowed: every, fps, uniform, range)",
            "p.yaml:1:33: sample: give one policy, not every and fps",
        ])
        XCTAssertEqual(issues("""
            source: { images: a, video: b }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), ["p.yaml:1:9: source: give one of 'images', 'list' or 'video', not images and video"])
        XCTAssertEqual(issues("""
            source: { images: a }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl, overlay: o, overlays: p}
            """), ["p.yaml:3:24: sink: give 'overlays' once (overlay is the same sink)"])
        // A repeated key: one line at the repeat, naming the first (not Yams' multi-line message).
        XCTAssertEqual(issues("""
            name: a
            source: { images: a }
            name: b
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), ["p.yaml:3:1: duplicate key 'name' (first at line 1)"])
        XCTAssertEqual(issues("""
            source: { images: a, images: b }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), ["p.yaml:1:22: duplicate key 'images' (first at line 1)"])
        XCTAssertEqual(issues(""), ["p.yaml:1:1: a pipeline is a mapping with keys source, stages, sink"])
        XCTAssertEqual(issues("""
            source: { images: a }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl, masks: m}
            """), ["p.yaml:3:24: sink: 'masks' needs a segmentation model; efficientnet_lite0 does image-classification"])
        XCTAssertEqual(issues("""
            source: { images: a, sample: all }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), ["p.yaml:1:22: source: 'sample' applies to a 'video' source"])
        XCTAssertEqual(issues("""
            source: { video: a.mp4, sample: { range: [3, 1] } }
            stages: [{model: efficientnet_lite0}]
            sink: {jsonl: o.jsonl}
            """), ["p.yaml:1:42: 'range' must have 0 <= start < end, got [3.0, 1.0]"])
    }

    func testInvalidYAMLGivesItsPosition() {
        let found = issues("source: { images: [a, b }\n")
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found[0].hasPrefix("p.yaml:1:"), found[0])
        XCTAssertTrue(found[0].contains("invalid YAML"), found[0])
    }

    func testShippedPipelinesValidate() throws {
        let folder = TestResources.repository.appendingPathComponent("pipelines")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertFalse(files.isEmpty)
        for file in files {
            XCTAssertNoThrow(try PipelineDefinition.load(contentsOf: folder.appendingPathComponent(file)), file)
        }
    }
    /// A "billion laughs" document: nine levels of ten aliases each, 10^9 strings once expanded. It is
    /// never expanded: a list of lists where paths belong is one problem per entry of the outer list.
    func testAliasBombIsRefusedWithoutExpanding() throws {
        var lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        for level in 1...8 {
            lines.append("l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ") + "]")
        }
        lines += ["name: bomb", "source: { images: *l8 }", "stages: [{ model: efficientnet_lite0 }]", "sink: { jsonl: r.jsonl }"]
        let found = issues(lines.joined(separator: "\n"))
        XCTAssertFalse(found.isEmpty)
        XCTAssertLessThanOrEqual(found.count, 20, found.joined(separator: "\n"))
        XCTAssertTrue(found.allSatisfy { $0.hasPrefix("p.yaml:") }, found.joined(separator: "\n"))
        // Yams shares an anchored node among its aliases (positions point at the anchor); the validator
        // looks one level into `images` and stops.
        XCTAssertTrue(found.contains { $0.hasSuffix("'images' must be a non-empty string, got a list") },
                      found.joined(separator: "\n"))
        print("ALIASBOMB \(found.count) issues, first: \(found[0])")
    }
}

