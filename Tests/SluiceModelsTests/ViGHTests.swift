import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// Parity of ViG-H with the official module tree (scripts/reference/vig.py, HierViG written from the
/// official `classification/models/vig_h.py` with its module names; the bidirectional GLA as the
/// step-by-step recurrence in float64). Reduced configurations (dims [16, 32, 48, 64], four stages, three
/// downsamples, d_k 8 / d_v 16 per head) run on deterministic recipe weights (`ViGRecipe`), so only logits
/// are committed; one smallest configuration loads a real torch.save({'model': state_dict}) checkpoint
/// in the previous training code's key names with conv-shaped Linear2d weights.
final class ViGHTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("vig_h")
    static let script = "/usr/bin/python3 scripts/reference/vig.py"

    struct Case {
        let name: String
        let configuration: ViGHConfiguration
        let inputShape: [Int]
        let weights: String
        let logits: String
        let parameters: [(String, [Int])]?
    }

    static func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let url = fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            XCTFail("missing ViG-H fixture \(name): regenerate with `\(script)`", file: file, line: line)
            throw XCTSkip("missing fixture \(name)")
        }
        return url
    }

    static func cases() throws -> [Case] {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try fixture("manifest.json"))) as! [String: Any]
        return try (json["cases"] as! [[String: Any]]).map { item in
            let config = try JSONDecoder().decode(ViGHConfiguration.self,
                                                  from: JSONSerialization.data(withJSONObject: item["configuration"]!))
            let parameters = (item["parameters"] as? [[Any]])?.map { ($0[0] as! String, $0[1] as! [Int]) }
            return Case(name: item["name"] as! String, configuration: config, inputShape: item["input_shape"] as! [Int],
                        weights: item["weights"] as! String, logits: item["logits"] as! String, parameters: parameters)
        }
    }

    /// The parameter list of a configuration, recorded by building it.
    static func parameterShapes(_ config: ViGHConfiguration) -> [(String, [Int])] {
        ModelRegistry.vigHCard(name: "vig_h", configuration: config).parameterShapes
    }

    static func namedCase(_ name: String) throws -> Case {
        guard let found = try cases().first(where: { $0.name == name }) else {
            XCTFail("vig_h/manifest.json has no case \(name): regenerate with `\(script)`")
            throw XCTSkip("no case \(name)")
        }
        return found
    }

    func assertParity(_ name: String, threads: [Int] = [1, 2]) throws {
        let item = try Self.namedCase(name)
        let stateDict = item.weights == "recipe"
            ? ViGRecipe.stateDict(Self.parameterShapes(item.configuration))
            : try Checkpoint.load(try Self.fixture(item.weights))
        // Through a card: key normalisation (legacy names, Linear2d shapes) and validation.
        let model = try ModelRegistry.vigHCard(name: name, configuration: item.configuration)
            .makeClassifier(stateDict: stateDict, source: item.weights)
        let expected: Tensor = try NPY.read(contentsOf: try Self.fixture(item.logits))
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.25, "\(name): fixture logits look trivial")
        let input = ViGRecipe.input(item.inputShape).nchwToNHWC()
        assertLogitsMatch(model, input: input, expected: expected, name: "ViG-H \(name)", threads: threads)
    }

    /// Batch 2, 64x64: grids 16x16 (256 tokens, four scan chunks), 8x8, 4x4, 2x2.
    func testReducedSquare() throws { try assertParity("h_square") }
    /// 60x44: grids 15x11, 8x6, 4x3, 2x2 (odd sides through every stride-2 conv).
    func testReducedNonSquareOddSides() throws { try assertParity("h_nonsquare_odd") }
    /// USE_ACT_IN_CONV and USE_OUT_ACT on (config.py's default for the first; the ViG-H yamls turn both off).
    func testReducedWithActivations() throws { try assertParity("h_act") }
    /// {'model': state_dict} with patch_embed.proj / patch_embed.norm / ln_1 / self_attention / norm / head
    /// names and [out, in, 1, 1] Linear2d weights, as HierViG's and Linear2d's `_load_from_state_dict` accept.
    func testLegacyFormatCheckpoint() throws { try assertParity("h_legacy_checkpoint") }

    /// Full-size ViG-H-T through its registered card at 224 (3136 tokens in stage 1), recipe weights.
    func testFullSizeTinyParity() throws {
        let item = try Self.namedCase("full_vig_h_tiny")
        XCTAssertEqual(item.configuration, ViGHConfiguration.named("vig_h_tiny"))
        let card = try ModelRegistry.card(named: "vig_h_tiny")
        let model = try card.makeClassifier(stateDict: ViGRecipe.stateDict(card.parameterShapes))
        let expected: Tensor = try NPY.read(contentsOf: try Self.fixture(item.logits))
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.5, "fixture logits look trivial")
        let input = ViGRecipe.input(item.inputShape).nchwToNHWC()
        XCTAssertEqual(expected.shape, [1, 1000])
        assertLogitsMatch(model, input: input, expected: expected, name: "ViG-H vig_h_tiny full size", threads: [1, 2])
    }

    /// The parameter list equals the reference's state_dict keys and shapes, in order.
    func testParameterShapesMatchReference() throws {
        let withParameters = try Self.cases().filter { $0.parameters != nil }
        XCTAssertFalse(withParameters.isEmpty)
        for item in withParameters {
            let ours = Self.parameterShapes(item.configuration)
            XCTAssertEqual(ours.map(\.0), item.parameters!.map(\.0), item.name)
            XCTAssertEqual(ours.map(\.1), item.parameters!.map(\.1), item.name)
        }
    }

    /// Parameter counts of the official constructors (the reference's `counts`; ViG-H-T's 28,600,680 is
    /// also the dossier's figure) and the cards' preprocessing.
    func testOfficialCards() throws {
        let expected = ["vig_h_tiny": 28_600_680, "vig_h_small": 50_051_688, "vig_h_base": 88_904_360]
        for name in ViGHConfiguration.officialNames {
            let card = try ModelRegistry.card(named: name)
            XCTAssertEqual(card.family, "vig_h")
            XCTAssertEqual(card.preprocessing, .imageNet)
            XCTAssertEqual(card.preprocessing?.resizeShorterSide, 256)
            XCTAssertEqual(card.preprocessing?.cropSize, 224)
            XCTAssertEqual(card.preprocessing?.interpolation, .bicubic)
            XCTAssertEqual(card.labels.name, "imagenet1k")
            XCTAssertEqual(card.parameterShapes.reduce(0) { $0 + $1.1.reduce(1, *) }, expected[name], name)
        }
    }

    /// The previous training code's names (what `HierViG._load_from_state_dict` renames), DataParallel's
    /// prefix and conv-shaped Linear2d weights all map back to the official state dict, tensor for tensor,
    /// including two-digit block indices (blocks.1 must not capture blocks.10).
    func testSanitizeMapsLegacyNames() throws {
        let config = ViGHConfiguration(dims: [8, 16, 24, 32], depths: [1, 12, 1, 1], numHeads: [1, 2, 3, 4], numClasses: 5)
        let official = ViGRecipe.stateDict(Self.parameterShapes(config))
        func legacyName(_ key: String) -> String {
            for (new, old) in [("patch_embed.0.", "patch_embed.proj."), ("patch_embed.2.", "patch_embed.norm."),
                               ("classifier.norm.", "norm."), ("classifier.head.", "head.")] where key.hasPrefix(new) {
                return old + key.dropFirst(new.count)
            }
            var parts = key.split(separator: ".").map(String.init)
            if parts.count > 4, parts[0] == "layers", parts[2] == "blocks" {
                parts[4] = ["norm": "ln_1", "op": "self_attention"][parts[4]] ?? parts[4]
            }
            return parts.joined(separator: ".")
        }
        var legacy = try official.renamingKeys { "module." + legacyName($0) }
        for key in legacy.keys where key.hasSuffix("qkv_proj.weight") || key.hasSuffix("mlp.fc1.weight") {
            let t = legacy[key]!
            legacy.set(t.reshaped(t.shape + [1, 1]), forKey: key)
        }
        XCTAssertTrue(legacy.contains("module.layers.1.blocks.10.self_attention.qkv_proj.weight"))
        XCTAssertTrue(legacy.contains("module.layers.1.blocks.11.ln_1.bias"))
        XCTAssertTrue(legacy.contains("module.norm.weight") && legacy.contains("module.head.bias"))
        let sanitized = try ModelRegistry.vigHCard(name: "legacy", configuration: config).sanitize(legacy)
        XCTAssertEqual(sanitized.keys, official.keys)
        for key in official.keys { XCTAssertEqual(sanitized[key], official[key], key) }
        XCTAssertEqual(try ViGH.sanitize(official).keys, official.keys)
    }

    /// A checkpoint with a missing, a mis-shaped and an unexpected tensor is rejected with every problem.
    func testRejectsBadCheckpoint() throws {
        let item = try Self.namedCase("h_square")
        var dict = ViGRecipe.stateDict(Self.parameterShapes(item.configuration))
        dict.removeValue(forKey: "layers.1.blocks.1.op.g_norm.weight")
        dict.set(Tensor(zeros: [64, 48]), forKey: "layers.2.blocks.0.op.qkv_proj.weight")
        dict.set(Tensor(zeros: [1]), forKey: "layers.3.downsample.1.weight")
        let card = ModelRegistry.vigHCard(name: "reduced", configuration: item.configuration)
        XCTAssertThrowsError(try card.makeClassifier(stateDict: dict, source: "bad.pth")) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("3 problem(s)"), message)
            XCTAssertTrue(message.contains("missing layers.1.blocks.1.op.g_norm.weight [16]"), message)
            XCTAssertTrue(message.contains("layers.2.blocks.0.op.qkv_proj.weight has shape [64, 48], expected [96, 48]"), message)
            // The last stage has no downsample.
            XCTAssertTrue(message.contains("unexpected layers.3.downsample.1.weight"), message)
        }
    }
}
