import Foundation
import XCTest
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
            model: .init(name: "efficientnet_lite0", weights: "/data/w/lite0.pth", batch: 4), topK: 3,
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
            "p.yaml:2:11: source: unknown key 'imagez' (allowed: images, recursive, list)",
            "p.yaml:2:9: source: missing 'images' or 'list'",
            "p.yaml:4:12: unknown model 'no_such_model' (known: \(ModelRegistry.names.joined(separator: ", ")))",
            "p.yaml:5:12: 'batch' must be an integer, got 'lots'",
            "p.yaml:6:5: unknown stage 'blur' (allowed: model, topk)",
            "p.yaml:7:11: 'topk' must be in 1...1000, got 0",
            "p.yaml:8:9: sink: unknown key 'parquet' (allowed: jsonl, csv)",
            "p.yaml:8:7: sink: name at least one of jsonl, csv",
        ])
    }

    func testMissingSectionsAndWrongTypes() {
        XCTAssertEqual(issues("name: x\n"), [
            "p.yaml:1:1: pipeline: missing 'source' (one of: images, list)",
            "p.yaml:1:1: pipeline: missing 'stages' (a list with a model stage)",
            "p.yaml:1:1: pipeline: missing 'sink' (jsonl and/or csv)",
        ])
        XCTAssertEqual(issues("source: photos\nstages: {model: efficientnet_lite0}\nsink: out.jsonl\n"), [
            "p.yaml:1:9: 'source' must be a mapping (images or list), got 'photos'",
            "p.yaml:2:9: 'stages' must be a list, got a mapping",
            "p.yaml:3:7: 'sink' must be a mapping with jsonl and/or csv, got 'out.jsonl'",
        ])
    }

    func testInvalidYAMLGivesItsPosition() {
        let found = issues("source: { images: [a, b }\n")
        XCTAssertEqual(found.count, 1)
        XCTAssertTrue(found[0].hasPrefix("p.yaml:1:"), found[0])
        XCTAssertTrue(found[0].contains("invalid YAML"), found[0])
    }

    func testShippedPipelinesValidate() throws {
        let folder = CLI.repository.appendingPathComponent("pipelines")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        XCTAssertFalse(files.isEmpty)
        for file in files {
            XCTAssertNoThrow(try PipelineDefinition.load(contentsOf: folder.appendingPathComponent(file)), file)
        }
    }
}
