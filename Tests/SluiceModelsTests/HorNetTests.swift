import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Parity of HorNet with the official module tree (scripts/reference/hornet.py, written from the
/// official hornet.py with its module names). Weights and inputs come from a deterministic recipe that
/// the script and `HorNetRecipe` implement identically, so only logits are committed; one small case
/// loads a real torch.save({'model': state_dict}) checkpoint instead.
final class HorNetTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("hornet")
    static let script = "/usr/bin/python3 scripts/reference/hornet.py"

    struct Case {
        let name: String
        let configuration: HorNetConfiguration
        let inputShape: [Int]
        let weights: String
        let logits: String
    }

    static func fixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let url = fixtures.appendingPathComponent(name)
        guard FileManager.default.fileExists(atPath: url.path) else {
            XCTFail("missing HorNet fixture \(name): regenerate with `\(script)`", file: file, line: line)
            throw XCTSkip("missing fixture \(name)")
        }
        return url
    }

    static func configuration(_ json: [String: Any]) -> HorNetConfiguration {
        let gf = (json["gflayer"] as! [Any]).map { item -> HorNetConfiguration.GlobalFilter? in
            guard let pair = item as? [Int] else { return nil }
            return .init(h: pair[0], w: pair[1])
        }
        return HorNetConfiguration(baseDim: json["base_dim"] as! Int, depths: json["depths"] as! [Int],
                                   orders: json["orders"] as! [Int], gflayer: gf, s: json["s"] as! Double,
                                   numClasses: json["num_classes"] as! Int)
    }

    static func cases() throws -> [Case] {
        let data = try Data(contentsOf: try fixture("manifest.json"))
        let manifest = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return (manifest["cases"] as! [[String: Any]]).map { item in
            Case(name: item["name"] as! String, configuration: configuration(item["configuration"] as! [String: Any]),
                 inputShape: item["input_shape"] as! [Int], weights: item["weights"] as! String,
                 logits: item["logits"] as! String)
        }
    }

    static func namedCase(_ name: String) throws -> Case {
        guard let found = try cases().first(where: { $0.name == name }) else {
            XCTFail("manifest.json has no case \(name): regenerate with `\(script)`")
            throw XCTSkip("no case \(name)")
        }
        return found
    }

    /// The state dict of a case: the recipe's, or the committed checkpoint's.
    static func weights(for item: Case) throws -> StateDict {
        if item.weights == "recipe" {
            return HorNetRecipe.stateDict(parameterShapes(item.configuration))
        }
        return try Checkpoint.load(try fixture(item.weights))
    }

    static func expectedLogits(_ item: Case) throws -> Tensor {
        try NPY.read(contentsOf: try fixture(item.logits))
    }

    /// The parameter list of a configuration, recorded by building it.
    static func parameterShapes(_ config: HorNetConfiguration) -> [(String, [Int])] {
        WeightReader.parameterShapes { HorNet(configuration: config, weights: $0) }
    }

    /// Builds the model after the same checks a registered card does.
    static func model(_ item: Case, _ stateDict: StateDict) throws -> HorNet {
        let reader = WeightReader(try HorNet.sanitize(stateDict).tensors)
        let model = HorNet(configuration: item.configuration, weights: reader)
        XCTAssertEqual(reader.problems, [], item.name)
        return model
    }

    func assertParity(_ name: String, threads: [Int] = [1, 2]) throws {
        let item = try Self.namedCase(name)
        let model = try Self.model(item, try Self.weights(for: item))
        let expected = try Self.expectedLogits(item)
        // A fixture that is all zeros or constant would let anything pass.
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.5, "\(name): fixture logits look trivial")
        let input = HorNetRecipe.input(item.inputShape).nchwToNHWC()
        assertLogitsMatch(model, input: input, expected: expected, name: "HorNet \(name)", threads: threads)
    }

    // Reduced configurations: dims [16, 32, 64, 128], depths [1, 1, 2, 1], gnConv orders 2, 3, 4, 5.

    func testReduced7x7Square() throws { try assertParity("reduced_7x7_square") }
    func testReduced7x7NonSquare() throws { try assertParity("reduced_7x7_nonsquare") }
    /// Global filter on its native 14x14 and 7x7 grids (no weight resize).
    func testReducedGlobalFilterNativeGrid() throws { try assertParity("reduced_gf_native") }
    /// 10x10 and 5x5 grids: the complex weight is resized bilinearly (align_corners=True).
    func testReducedGlobalFilterResizedWeight() throws { try assertParity("reduced_gf_resized") }
    /// 14x18 and 7x9 grids: non-square, odd FFT width, resized weight.
    func testReducedGlobalFilterNonSquare() throws { try assertParity("reduced_gf_nonsquare") }
    /// A real torch.save({'model': state_dict}) checkpoint (dims [8, 16, 32, 64], global filter on a 2x2 grid).
    func testSmallOfficialFormatCheckpoint() throws { try assertParity("smallest_checkpoint") }

    // Full size, through the registered cards.

    func assertFullSize(_ model: String, caseName: String) throws {
        let item = try Self.namedCase(caseName)
        XCTAssertEqual(item.configuration, HorNetConfiguration.named(model))
        let card = try ModelRegistry.card(named: model)
        let classifier = try card.makeClassifier(stateDict: HorNetRecipe.stateDict(card.parameterShapes))
        let expected = try Self.expectedLogits(item)
        let logits = classifier(HorNetRecipe.input(item.inputShape).nchwToNHWC())
        let error = Tensor.maxRelativeError(logits, expected)
        print("HorNet parity \(model) full size: max relative error \(error) (max |logit| \(expected.data.map(abs).max()!))")
        XCTAssertLessThanOrEqual(error, 1e-4, "\(model): max relative error \(error)")
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0.5, "\(model): fixture logits look trivial")
    }

    func testFullSizeTiny7x7() throws { try assertFullSize("hornet_tiny_7x7", caseName: "full_tiny_7x7") }
    func testFullSizeTinyGF() throws { try assertFullSize("hornet_tiny_gf", caseName: "full_tiny_gf") }

    // Keys, cards and checkpoint checks.

    func testParameterListFollowsOfficialStateDictOrder() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try Self.fixture("mmpretrain_keys.json")))
            as! [String: Any]
        let config = Self.configuration(json["configuration"] as! [String: Any])
        let official = (json["pairs"] as! [[String]]).map { $0[0] }
        XCTAssertEqual(Self.parameterShapes(config).map(\.0), official)
        // Parameter counts of the official models (mmpretrain's metafile / the HorNet README).
        func count(_ name: String) throws -> Int {
            try ModelRegistry.card(named: name).parameterShapes.reduce(0) { $0 + $1.1.reduce(1, *) }
        }
        XCTAssertEqual(try count("hornet_tiny_7x7"), 22_409_512)
        XCTAssertEqual(try count("hornet_tiny_gf"), 22_991_848)
        for name in HorNetConfiguration.officialNames {
            let card = try ModelRegistry.card(named: name)
            XCTAssertEqual(card.family, "hornet")
            XCTAssertEqual(card.preprocessing, .imageNet)
        }
    }

    func testMMPretrainKeyNamesAreMappedToOfficialOnes() throws {
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: try Self.fixture("mmpretrain_keys.json")))
            as! [String: Any]
        let config = Self.configuration(json["configuration"] as! [String: Any])
        let pairs = (json["pairs"] as! [[String]]).map { ($0[0], $0[1]) }
        let official = HorNetRecipe.stateDict(Self.parameterShapes(config))
        // Every kind of rename mmpretrain makes is in the fixture.
        let renamed = Set(pairs.map(\.1))
        for needle in ["backbone.norm3.weight", "head.fc.weight", ".gnconv.projs.0.weight", ".gamma1.weight",
                       ".gamma2.weight", ".gnconv.dwconv.complex_weight"] {
            XCTAssertTrue(renamed.contains { $0.hasSuffix(needle) || $0 == needle }, "no mmpretrain key like \(needle)")
        }
        let mmpretrain = StateDict(pairs.map { ($0.1, official[$0.0]!) })
        let sanitized = try HorNet.sanitize(mmpretrain)
        XCTAssertEqual(sanitized.keys, official.keys)
        for key in official.keys { XCTAssertEqual(sanitized[key], official[key], key) }
        // DataParallel's prefix on top of mmpretrain's.
        let wrapped = try mmpretrain.renamingKeys { "module." + $0 }
        XCTAssertEqual(try ModelRegistry.card(named: "hornet_tiny_7x7").sanitize(wrapped).keys, official.keys)
        // Official names pass through unchanged.
        XCTAssertEqual(try HorNet.sanitize(official).keys, official.keys)
    }

    /// mmpretrain-named full-size weights, imported through the store (key normalisation, validation,
    /// safetensors), then loaded and run: the logits of the official-named weights.
    func testImportOfMMPretrainCheckpointThroughStore() throws {
        let item = try Self.namedCase("full_tiny_7x7")
        let card = try ModelRegistry.card(named: "hornet_tiny_7x7")
        let official = HorNetRecipe.stateDict(card.parameterShapes)
        func mmpretrainName(_ k: String) -> String {
            if k.hasPrefix("head.") { return "head.fc." + k.dropFirst("head.".count) }
            var n = k
            if n.hasPrefix("norm.") { n = "norm3." + n.dropFirst("norm.".count) }
            n = n.replacingOccurrences(of: "gnconv.pws", with: "gnconv.projs")
            if n.hasSuffix(".gamma1") || n.hasSuffix(".gamma2") { n += ".weight" }
            return "backbone." + n
        }
        let renamed = try official.renamingKeys { mmpretrainName($0) }
        let home = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-hornet-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: home) }
        let file = home.appendingPathComponent("hornet-tiny_3rdparty_in1k.safetensors")
        try Safetensors.write(renamed, to: file)
        let store = ModelStore(home: home)
        let summary = try store.importCheckpoint(file, model: "hornet_tiny_7x7")
        XCTAssertEqual(summary.parameterCount, 22_409_512)
        let (_, classifier) = try store.loadClassifier("hornet_tiny_7x7")
        let logits = classifier(HorNetRecipe.input(item.inputShape).nchwToNHWC())
        let error = Tensor.maxRelativeError(logits, try Self.expectedLogits(item))
        print("HorNet mmpretrain import through the store: max relative error \(error)")
        XCTAssertLessThanOrEqual(error, 1e-4)
    }

    func testBadCheckpointIsRejectedListingEveryProblem() throws {
        let card = try ModelRegistry.card(named: "hornet_tiny_gf")
        var dict = StateDict(card.parameterShapes.map { ($0.0, Tensor(zeros: $0.1)) })
        dict.removeValue(forKey: "stages.2.7.gnconv.pws.1.bias")
        dict.set(Tensor(zeros: [240, 14, 8]), forKey: "stages.2.0.gnconv.dwconv.complex_weight")
        dict.set(Tensor(zeros: [1000, 256]), forKey: "head.weight")
        dict.set(Tensor(zeros: [64]), forKey: "stages.0.0.gnconv.dwconv.complex_weight")
        let expected = ["stages.2.0.gnconv.dwconv.complex_weight has shape [240, 14, 8], expected [240, 14, 8, 2]",
                        "missing stages.2.7.gnconv.pws.1.bias [128]",
                        "head.weight has shape [1000, 256], expected [1000, 512]",
                        "unexpected stages.0.0.gnconv.dwconv.complex_weight"]
        XCTAssertEqual(WeightCheck.problems(try HorNet.sanitize(dict).tensors, against: card), expected)
        XCTAssertThrowsError(try card.makeClassifier(stateDict: dict)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("4 problem(s)"), text)
            for problem in expected { XCTAssertTrue(text.contains(problem), "\(problem) not in \(text)") }
        }
        // The same checkpoint under mmpretrain's names reports the same problems under official names.
        let mmpretrain = try dict.renamingKeys { key -> String in
            key.hasPrefix("head.") ? "head.fc." + key.dropFirst(5)
                : "backbone." + key.replacingOccurrences(of: "gnconv.pws", with: "gnconv.projs")
        }
        XCTAssertThrowsError(try card.makeClassifier(stateDict: mmpretrain)) { error in
            for problem in expected { XCTAssertTrue("\(error)".contains(problem), "\(problem) not in \(error)") }
        }
    }
}

/// The deterministic weights and inputs of scripts/reference/hornet.py (see its docstring).
enum HorNetRecipe {
    /// u in [-1, 1) for flat indices 0..<count.
    static func uniform(_ key: String, count: Int) -> [Double] { ParityRecipe.uniform(key, count: count) }

    static func offsetScale(_ key: String, _ shape: [Int]) -> (Double, Double) {
        let name = key.split(separator: ".").last.map(String.init) ?? key
        if name == "gamma1" || name == "gamma2" { return (0, 0.5) }
        if name == "complex_weight" { return (0, 1) }
        if name == "bias" || name == "running_mean" { return (0, 0.2) }
        if shape.count == 1 { return (1, 0.25) }
        let fanIn = shape.dropFirst().reduce(1, *)
        return (0, (3.0 / Double(fanIn)).squareRoot())
    }

    static func tensor(_ key: String, _ shape: [Int]) -> Tensor {
        let (offset, scale) = offsetScale(key, shape)
        return Tensor(shape: shape, data: uniform(key, count: shape.reduce(1, *)).map { Float(offset + scale * $0) })
    }

    static func stateDict(_ shapes: [(String, [Int])]) -> StateDict {
        StateDict(shapes.map { ($0.0, tensor($0.0, $0.1)) })
    }

    /// NCHW input: u itself from the key "input".
    static func input(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, data: uniform("input", count: shape.reduce(1, *)).map { Float($0) })
    }
}
