import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// Parity of plain ViG with the official module tree (scripts/reference/vig.py, written from the official
/// `classification/models/vig.py` with its module names, the bidirectional GLA as the step-by-step
/// recurrence). Reduced configurations (C 48, 3 heads, d_k 8, d_v 16, depth 2, patch 16, trained grid 4x4)
/// with the ViG-T SiLU switches on and off; each loads a real torch.save({'model': state_dict}) checkpoint.
/// Full-size ViG-T runs on deterministic recipe weights (`ViGRecipe`), so only its logits are committed.
final class ViGTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("vig")
    static let script = "/usr/bin/python3 scripts/reference/vig.py"

    struct Configuration {
        let configuration: ViGConfiguration
        let weights: String
        let parameters: [(String, [Int])]
    }

    struct Case {
        let name: String
        let configuration: String
        let input: String
        let logits: String
    }

    static func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let url = fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            XCTFail("missing ViG fixture \(name): regenerate with `\(script)`", file: file, line: line)
            throw XCTSkip("missing fixture \(name)")
        }
        return url
    }

    static func manifest() throws -> (configurations: [String: Configuration], cases: [Case]) {
        let data = try Data(contentsOf: try fixture("manifest.json"))
        let json = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var configurations: [String: Configuration] = [:]
        for (name, value) in json["configurations"] as! [String: Any] {
            let item = value as! [String: Any]
            let configData = try JSONSerialization.data(withJSONObject: item["configuration"]!)
            let config = try JSONDecoder().decode(ViGConfiguration.self, from: configData)
            let parameters = (item["parameters"] as! [[Any]]).map { ($0[0] as! String, $0[1] as! [Int]) }
            configurations[name] = Configuration(configuration: config, weights: item["weights"] as! String,
                                                 parameters: parameters)
        }
        let cases = (json["cases"] as! [[String: Any]]).map {
            Case(name: $0["name"] as! String, configuration: $0["configuration"] as! String,
                 input: $0["input"] as! String, logits: $0["logits"] as! String)
        }
        return (configurations, cases)
    }

    static func card(_ name: String, _ config: ViGConfiguration) -> ModelCard {
        ModelRegistry.vigCard(name: name, configuration: config)
    }

    func assertParity(_ name: String, threads: [Int] = [1, 2]) throws {
        let (configurations, cases) = try Self.manifest()
        guard let item = cases.first(where: { $0.name == name }), let config = configurations[item.configuration] else {
            XCTFail("manifest.json has no case \(name): regenerate with `\(Self.script)`")
            return
        }
        let stateDict = try Checkpoint.load(try Self.fixture(config.weights))
        let model = try Self.card(item.configuration, config.configuration)
            .makeClassifier(stateDict: stateDict, source: config.weights)
        let expected: Tensor = try NPY.read(contentsOf: try Self.fixture(item.logits))
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.5, "\(name): fixture logits look trivial")
        let input: Tensor = try NPY.read(contentsOf: try Self.fixture(item.input))
        let nhwc = input.nchwToNHWC()
        assertLogitsMatch(model, input: nhwc, expected: expected, name: "ViG \(name)", threads: threads)
    }

    /// ViG-T switches (SiLU after the dwconv and before o_proj), token grid 4x4 = the pos_embed grid, batch 2.
    func testReducedWithActivationsNativeGrid() throws { try assertParity("act_native") }
    /// ViG-T switches, 96x80 input: 6x5 grid, pos_embed resized bicubically (align_corners=False).
    func testReducedWithActivationsResizedGrid() throws { try assertParity("act_resized") }
    /// ViG-S/B switches (no SiLU), native grid, batch 2.
    func testReducedWithoutActivationsNativeGrid() throws { try assertParity("noact_native") }
    /// ViG-S/B switches, resized non-square grid.
    func testReducedWithoutActivationsResizedGrid() throws { try assertParity("noact_resized") }

    /// The parameter list equals the reference's state_dict keys and shapes, in order.
    func testParameterShapesMatchReference() throws {
        let (configurations, _) = try Self.manifest()
        XCTAssertFalse(configurations.isEmpty)
        for (name, config) in configurations {
            let ours = Self.card(name, config.configuration).parameterShapes
            XCTAssertEqual(ours.map(\.0), config.parameters.map(\.0), name)
            XCTAssertEqual(ours.map(\.1), config.parameters.map(\.1), name)
        }
    }

    /// Full-size parameter counts (computed from the official constructors).
    func testOfficialParameterCounts() throws {
        let expected = ["vig_tiny": 5_834_536, "vig_small": 22_615_144, "vig_base": 89_022_184]
        for name in ViGConfiguration.officialNames {
            let card = try ModelRegistry.card(named: name)
            XCTAssertEqual(card.family, "vig")
            XCTAssertEqual(card.preprocessing, .imageNet)
            XCTAssertEqual(card.labels.name, "imagenet1k")
            let count = card.parameterShapes.reduce(0) { $0 + $1.1.reduce(1, *) }
            XCTAssertEqual(count, expected[name], name)
        }
    }

    /// Full-size ViG-T through its registered card on the deterministic recipe weights (`ViGRecipe`, the same
    /// numbers scripts/reference/vig.py generates): 224 input, 196 tokens (four scan chunks), against the
    /// reference's float64 logits.
    func testFullSizeTinyParity() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try Self.fixture("manifest.json"))) as! [String: Any]
        guard let item = (json["full_size"] as? [[String: Any]])?.first(where: { $0["model"] as? String == "vig_tiny" }) else {
            XCTFail("manifest.json has no full-size vig_tiny case: regenerate with `\(Self.script)`")
            return
        }
        let card = try ModelRegistry.card(named: "vig_tiny")
        let model = try card.makeClassifier(stateDict: ViGRecipe.stateDict(card.parameterShapes))
        let expected: Tensor = try NPY.read(contentsOf: try Self.fixture(item["logits"] as! String))
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.5, "fixture logits look trivial")
        let input = ViGRecipe.input(item["input_shape"] as! [Int]).nchwToNHWC()
        XCTAssertEqual(expected.shape, [1, 1000])
        assertLogitsMatch(model, input: input, expected: expected, name: "ViG vig_tiny full size", threads: [1, 2])
    }

    /// A checkpoint with a missing, a mis-shaped and an unexpected tensor is rejected with every problem.
    func testRejectsBadCheckpoint() throws {
        let (configurations, _) = try Self.manifest()
        let config = try XCTUnwrap(configurations["reduced_noact"])
        let good = try Checkpoint.load(try Self.fixture(config.weights))
        var tensors = good.tensors
        tensors["blocks.1.attn.g_norm.weight"] = nil
        tensors["blocks.0.attn.qkv_proj.weight"] = Tensor(zeros: [64, 48])
        tensors["blocks.0.attn.extra"] = Tensor(zeros: [1])
        let bad = StateDict(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) })
        let card = Self.card("reduced_noact", config.configuration)
        XCTAssertThrowsError(try card.makeClassifier(stateDict: bad, source: "bad.pth")) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains("missing blocks.1.attn.g_norm.weight"), message)
            XCTAssertTrue(message.contains("blocks.0.attn.qkv_proj.weight has shape [64, 48], expected [96, 48]"), message)
            XCTAssertTrue(message.contains("unexpected blocks.0.attn.extra"), message)
        }
        // The reduced checkpoint does not fit the full-size ViG-T.
        XCTAssertThrowsError(try ModelRegistry.card(named: "vig_tiny").makeClassifier(stateDict: good)) { error in
            XCTAssertTrue("\(error)".contains("pos_embed has shape [1, 16, 48], expected [1, 196, 192]"), "\(error)")
        }
    }

    // MARK: GLA scans

    /// Deterministic uniform numbers in [-1, 1) (splitmix64).
    struct Numbers {
        var state: UInt64
        mutating func next() -> Float {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 23) - 1
        }
    }

    /// Chunked scan vs the step-by-step recurrence on random q/k/v and ViG-style gates logsigmoid(z)/16
    /// with z uniform in `logits` (the default −8…4 gives per-token decays of about 0.61…0.999);
    /// `steepEvery` > 0 makes every n-th token's gates −190, forcing the step-by-step fallback inside those
    /// chunks.
    func assertChunkedMatchesRecurrence(tokens: Int, heads: Int, dk: Int, dv: Int, steepEvery: Int = 0,
                                        logits: Range<Float> = -8..<4) {
        let batch = 2
        var numbers = Numbers(state: UInt64(tokens * 131 + dk))
        let kd = heads * dk, vd = heads * dv, width = 2 * kd + vd
        let qkv = (0..<(batch * tokens * width)).map { _ in numbers.next() * 1.5 }
        var gates = (0..<(batch * tokens * 2 * kd)).map { _ -> Float in
            let z = logits.lowerBound + (numbers.next() + 1) / 2 * (logits.upperBound - logits.lowerBound)
            return (min(z, 0) - log1p(exp(-abs(z)))) / 16
        }
        if steepEvery > 0 {
            for row in stride(from: 0, to: batch * tokens, by: steepEvery) {
                for i in 0..<(2 * kd) { gates[row * 2 * kd + i] = -190 }
            }
        }
        var expected = [Float](repeating: 0, count: batch * tokens * vd), actual = expected
        qkv.withUnsafeBufferPointer { qp in
            gates.withUnsafeBufferPointer { gp in
                let base = qp.baseAddress!, g = gp.baseAddress!
                let q = GLA.Rows(base, rowStride: width, headStride: dk)
                let k = GLA.Rows(base + kd, rowStride: width, headStride: dk)
                let v = GLA.Rows(base + 2 * kd, rowStride: width, headStride: dv)
                let gf = GLA.Rows(g, rowStride: 2 * kd, headStride: dk)
                let gb = GLA.Rows(g + kd, rowStride: 2 * kd, headStride: dk)
                let scale = 1 / Float(dk).squareRoot()
                expected.withUnsafeMutableBufferPointer {
                    GLA.bidirectionalRecurrent(batch: batch, tokens: tokens, heads: heads, dk: dk, dv: dv, q: q, k: k, v: v,
                                               forwardGates: gf, backwardGates: gb, scale: scale, outputScale: 0.25,
                                               output: $0.baseAddress!)
                }
                actual.withUnsafeMutableBufferPointer {
                    GLA.bidirectionalChunked(batch: batch, tokens: tokens, heads: heads, dk: dk, dv: dv, q: q, k: k, v: v,
                                             forwardGates: gf, backwardGates: gb, scale: scale, outputScale: 0.25,
                                             output: $0.baseAddress!)
                }
            }
        }
        let e = Tensor(shape: [batch * tokens, vd], data: expected), a = Tensor(shape: [batch * tokens, vd], data: actual)
        XCTAssertGreaterThan(expected.map(abs).max() ?? 0, 0.5, "trivial recurrence output")
        let error = Tensor.maxRelativeError(a, e)
        print("GLA chunked vs recurrent, \(tokens) tokens, \(heads)x(dk \(dk), dv \(dv)), z in \(logits), steep every \(steepEvery): max relative error \(error)")
        XCTAssertLessThanOrEqual(error, 1e-4, "\(tokens) tokens: max relative error \(error)")
    }

    func testChunkedScanMatchesRecurrence196Tokens() {
        assertChunkedMatchesRecurrence(tokens: 196, heads: 3, dk: 32, dv: 64)
    }

    func testChunkedScanMatchesRecurrence1024Tokens() {
        assertChunkedMatchesRecurrence(tokens: 1024, heads: 2, dk: 32, dv: 64)
    }

    func testChunkedScanSteepDecaysFallBack() {
        assertChunkedMatchesRecurrence(tokens: 196, heads: 2, dk: 8, dv: 16, steepEvery: 150)
    }

    /// 4096 tokens (vig_tiny at 1024x1024), 64 chunks per direction, realistic decays.
    func testChunkedScanMatchesRecurrence4096Tokens() {
        assertChunkedMatchesRecurrence(tokens: 4096, heads: 2, dk: 32, dv: 64)
    }

    /// 4096 tokens with steep decays: z in −16…−4 (per-token log decays −1…−0.25) keeps most chunks in the
    /// factorised form with e^{±B} up to about e^{±60}; z in −40…−10 (−2.5…−0.6) pushes most chunks over the
    /// span into the step-by-step fallback; isolated −190 gates on top cut the state.
    func testChunkedScanSteepDecays4096Tokens() {
        assertChunkedMatchesRecurrence(tokens: 4096, heads: 2, dk: 32, dv: 64, logits: -16 ..< -4)
        assertChunkedMatchesRecurrence(tokens: 4096, heads: 2, dk: 16, dv: 32, logits: -40 ..< -10)
        assertChunkedMatchesRecurrence(tokens: 4096, heads: 1, dk: 32, dv: 64, steepEvery: 1000)
    }
}

/// The deterministic weights and inputs of scripts/reference/vig.py (`recipe_offset_scale`): the uniform
/// stream of `HorNetRecipe` (FNV-1a of the key seeds splitmix64, u in [-1, 1)), value = Float(offset + scale·u).
enum ViGRecipe {
    static func offsetScale(_ key: String, _ shape: [Int]) -> (Double, Double) {
        let name = key.split(separator: ".").last.map(String.init) ?? key
        if key.hasSuffix("gk_proj.1.bias") { return (-3, 5) }   // per-token decays about 0.61 … 0.99
        if key == "pos_embed" { return (0, 0.5) }
        if name == "bias" { return (0, 0.2) }
        if shape.count == 1 { return (1, 0.25) }                 // RMSNorm / LayerNorm weights
        var scale = (3.0 / Double(shape.dropFirst().reduce(1, *))).squareRoot()
        if key.contains("qkv_proj") { scale *= 2 }
        return (0, scale)
    }

    static func stateDict(_ shapes: [(String, [Int])]) -> StateDict {
        StateDict(shapes.map { key, shape in
            let (offset, scale) = offsetScale(key, shape)
            let values = HorNetRecipe.uniform(key, count: shape.reduce(1, *)).map { Float(offset + scale * $0) }
            return (key, Tensor(shape: shape, data: values))
        })
    }

    /// NCHW input, the key "input".
    static func input(_ shape: [Int]) -> Tensor { HorNetRecipe.input(shape) }
}
