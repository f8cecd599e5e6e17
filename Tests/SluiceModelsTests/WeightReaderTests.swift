import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Weights are declared once, where each family's initialiser reads them: the recorded list is the
/// parameter list (proven against the reference checkpoints), and a bad checkpoint is reported with
/// every problem at once instead of crashing.
final class WeightReaderTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!

    /// The problems of a thrown `ModelError.weightsMismatch`, or a failure.
    static func problems(_ body: () throws -> Any, model: String, source: String,
                         file: StaticString = #filePath, line: UInt = #line) -> [String] {
        do {
            _ = try body()
            XCTFail("no error thrown", file: file, line: line)
        } catch ModelError.weightsMismatch(let thrownModel, let thrownSource, let problems) {
            XCTAssertEqual(thrownModel, model, file: file, line: line)
            XCTAssertEqual(thrownSource, source, file: file, line: line)
            return problems
        } catch {
            XCTFail("unexpected error \(error)", file: file, line: line)
        }
        return []
    }

    func testScopedKeysAreRecordedInOrderWithTheirShapes() throws {
        let reader = WeightReader.recording()
        let block = reader.scope("stages.0").scope("1")
        XCTAssertEqual(block("gamma1", [4]), Tensor(zeros: [4]))
        XCTAssertEqual(reader("head.weight", [2, 4]), Tensor(zeros: [2, 4]))
        XCTAssertEqual(reader.declared.map(\.0), ["stages.0.1.gamma1", "head.weight"])
        XCTAssertEqual(reader.declared.map(\.1), [[4], [2, 4]])
        XCTAssertEqual(reader.problems, [])
        XCTAssertNoThrow(try reader.finish(model: "m"))
    }

    func testLoadingRecordsMissingMisshapenAndUnexpectedTensorsAndCarriesOn() throws {
        let stored = Tensor(shape: [3], data: [1, 2, 3])
        let reader = WeightReader(["a.w": stored, "b": Tensor(zeros: [2]), "bn.num_batches_tracked": Tensor(zeros: [1]),
                                   "extra": Tensor(zeros: [1])], ignoredKeySuffixes: ["num_batches_tracked"])
        XCTAssertEqual(reader.scope("a")("w", [3]), stored)
        XCTAssertEqual(reader("b", [3]), Tensor(zeros: [3]), "a mis-shaped tensor reads as zeros of the declared shape")
        XCTAssertEqual(reader("c", [1, 2]), Tensor(zeros: [1, 2]), "a missing tensor reads as zeros")
        let expected = ["b has shape [2], expected [3]", "missing c [1, 2]", "unexpected extra"]
        XCTAssertEqual(reader.problems, expected)
        XCTAssertEqual(Self.problems({ try reader.finish(model: "m", source: "x.pth") }, model: "m", source: "x.pth"),
                       expected)
    }

    // MARK: EfficientNet-Lite0

    static func lite0() throws -> (ModelCard, StateDict) {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        return (card, HorNetRecipe.stateDict(card.parameterShapes))
    }

    func testLite0CheckpointProblemsAreAllThrownTogether() throws {
        let (card, good) = try Self.lite0()
        XCTAssertNoThrow(try card.makeClassifier(stateDict: good))
        let cases: [(String, (inout StateDict) -> Void, [String])] = [
            ("missing", { $0.removeValue(forKey: "_blocks.3._bn1.running_var") }, ["missing _blocks.3._bn1.running_var [144]"]),
            ("mis-shaped", { $0.set(Tensor(zeros: [10, 1280]), forKey: "_fc.weight") },
             ["_fc.weight has shape [10, 1280], expected [1000, 1280]"]),
            ("unexpected", { $0.set(Tensor(zeros: [32]), forKey: "_conv_stem.bias") }, ["unexpected _conv_stem.bias"]),
        ]
        var all = good
        for (name, damage, expected) in cases {
            var dict = good
            damage(&dict)
            damage(&all)
            XCTAssertEqual(Self.problems({ try card.makeClassifier(stateDict: dict, source: "bad.pth") },
                                         model: "efficientnet_lite0", source: "bad.pth"), expected, name)
        }
        XCTAssertEqual(Self.problems({ try card.makeClassifier(stateDict: all, source: "bad.pth") },
                                     model: "efficientnet_lite0", source: "bad.pth"),
                       cases.flatMap(\.2))
        // A mis-shaped depthwise weight (its group count comes from the configuration) is reported, not a trap.
        var depthwise = good
        depthwise.set(Tensor(zeros: [7, 1, 3, 3]), forKey: "_blocks.0._depthwise_conv.weight")
        XCTAssertEqual(Self.problems({ try card.makeClassifier(weights: depthwise.tensors) },
                                     model: "efficientnet_lite0", source: "weights"),
                       ["_blocks.0._depthwise_conv.weight has shape [7, 1, 3, 3], expected [32, 1, 3, 3]"])
        // An empty checkpoint lists every parameter as missing.
        let empty = Self.problems({ try card.makeClassifier(weights: [:]) }, model: "efficientnet_lite0", source: "weights")
        XCTAssertEqual(empty, card.parameterShapes.map { "missing \($0.0) \($0.1)" })
    }

    func testModulePrefixedLite0LoadsWithTheSameLogits() throws {
        let (card, good) = try Self.lite0()
        let prefixed = try good.renamingKeys { "module." + $0 }
        let input = HorNetRecipe.input([1, 3, 224, 224]).nchwToNHWC()
        let plain = try card.makeClassifier(stateDict: good)
        let unwrapped = try card.makeClassifier(stateDict: prefixed)
        let expected = plain(input)
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0, "recipe logits are all zero")
        XCTAssertEqual(unwrapped(input), expected)
    }

    /// The recorded list is the official checkpoint's keys and shapes, in file order (less BatchNorm's
    /// `num_batches_tracked`, which inference does not use).
    func testLite0RecordedParametersAreTheOfficialCheckpointsKeys() throws {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        let official = try Checkpoint.load(try TestResources.lite0Weights()).orderedTensors
            .filter { !$0.key.hasSuffix("num_batches_tracked") }
        XCTAssertEqual(card.parameterShapes.map(\.0), official.map(\.key))
        XCTAssertEqual(card.parameterShapes.map(\.1), official.map(\.tensor.shape))
    }

    // MARK: HorNet

    /// The committed torch.save({'model': state_dict}) checkpoint of the smallest HorNet case.
    static func hornetCheckpoint() throws -> (HorNetConfiguration, StateDict) {
        let item = try HorNetTests.namedCase("smallest_checkpoint")
        return (item.configuration, try Checkpoint.load(try HorNetTests.fixture(item.weights)))
    }

    func testHorNetCheckpointProblemsAreAllThrownTogether() throws {
        let (config, good) = try Self.hornetCheckpoint()
        var bad = good
        bad.removeValue(forKey: "stages.1.0.gnconv.pws.0.bias")
        bad.set(Tensor(zeros: [64, 8]), forKey: "stages.3.0.gnconv.dwconv.complex_weight")
        bad.set(Tensor(zeros: [7]), forKey: "head.extra")
        // Under DataParallel's prefix too: the card strips it before anything else.
        let wrapped = try bad.renamingKeys { "module." + $0 }
        let reader = WeightReader(try HorNet.sanitize(bad).tensors)
        _ = HorNet(configuration: config, weights: reader)
        let expected = ["missing stages.1.0.gnconv.pws.0.bias [8]",
                        "stages.3.0.gnconv.dwconv.complex_weight has shape [64, 8], expected [62, 2, 2, 2]",
                        "unexpected head.extra"]
        XCTAssertEqual(reader.problems, expected)
        XCTAssertEqual(Self.problems({ try HorNet.card(config).makeClassifier(stateDict: wrapped, source: "bad.pth") },
                                     model: "hornet_reduced", source: "bad.pth"), expected)
    }

    func testModulePrefixedHorNetCheckpointLoadsWithTheSameLogits() throws {
        let (config, good) = try Self.hornetCheckpoint()
        let card = HorNet.card(config)
        let plain = try card.makeClassifier(stateDict: good)
        let unwrapped = try card.makeClassifier(stateDict: try good.renamingKeys { "module." + $0 })
        let input = HorNetRecipe.input([1, 3, 64, 64]).nchwToNHWC()
        let expected = plain(input)
        XCTAssertGreaterThan(expected.data.map(abs).max() ?? 0, 0, "logits are all zero")
        XCTAssertEqual(unwrapped(input), expected)
    }

    // MARK: Recorded lists against the reference checkpoints

    /// Each family's recorded (key, shape) list is its committed reference checkpoint's, in file order.
    func assertRecordedEqualsCheckpoint(_ recorded: [(String, [Int])], _ checkpoint: StateDict, _ name: String,
                                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertFalse(recorded.isEmpty, name, file: file, line: line)
        XCTAssertEqual(recorded.map(\.0), checkpoint.keys, name, file: file, line: line)
        XCTAssertEqual(recorded.map(\.1), checkpoint.orderedTensors.map(\.tensor.shape), name, file: file, line: line)
    }

    func testHorNetRecordedParametersAreTheReferenceCheckpointsKeys() throws {
        let (config, checkpoint) = try Self.hornetCheckpoint()
        assertRecordedEqualsCheckpoint(HorNet.card(config).parameterShapes, checkpoint, "hornet smallest_checkpoint")
    }

    func testViGRecordedParametersAreTheReferenceCheckpointsKeys() throws {
        let (configurations, _) = try ViGTests.manifest()
        XCTAssertEqual(configurations.count, 2)
        for (name, item) in configurations {
            let checkpoint = try Checkpoint.load(try ViGTests.fixture(item.weights))
            assertRecordedEqualsCheckpoint(ViGTests.card(name, item.configuration).parameterShapes, checkpoint, name)
        }
    }

    /// ViG-H's reference checkpoint holds the previous training code's names: compared after the card's sanitising.
    func testViGHRecordedParametersAreTheReferenceCheckpointsKeys() throws {
        let item = try ViGHTests.namedCase("h_legacy_checkpoint")
        let card = ModelRegistry.vigHCard(name: item.name, configuration: item.configuration)
        let checkpoint = try card.sanitize(try Checkpoint.load(try ViGHTests.fixture(item.weights)))
        assertRecordedEqualsCheckpoint(card.parameterShapes, checkpoint, item.name)
    }
}

extension HorNet {
    /// A card for a test configuration, as the registry makes the official ones.
    static func card(_ config: HorNetConfiguration) -> ModelCard {
        ModelRegistry.horNetCard(name: "hornet_reduced", configuration: config)
    }
}
