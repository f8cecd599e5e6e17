import Foundation
import XCTest
import SluiceModels
import SluiceTensor
import SluiceTestSupport

/// Parity of EfficientNet-Lite0 with the official PyTorch code on the real ImageNet weights: the
/// fixtures are two real photos preprocessed and run by scripts/reference/efficientnet_lite.py.
final class EfficientNetLiteTests: XCTestCase {
    static let fixtures = Bundle.module.url(forResource: "Fixtures", withExtension: nil)!
        .appendingPathComponent("efficientnet_lite0")

    func testLogitsMatchOfficialCodeOnRealImages() throws {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        let weights = try Checkpoint.load(try TestResources.lite0Weights())
        let model = try card.makeClassifier(weights: weights.tensors)
        let input = try NPY.read(contentsOf: Self.fixtures.appendingPathComponent("input.npy"))
        let expected = try NPY.read(contentsOf: Self.fixtures.appendingPathComponent("logits.npy"))
        XCTAssertEqual(expected.shape, [2, 1000])

        let batched = model(input.nchwToNHWC())
        let error = Tensor.maxRelativeError(batched, expected)
        XCTAssertLessThanOrEqual(error, 1e-4, "batch of 2: max relative error \(error)")

        // Each image alone gives the same logits as in the batch, on 1 and on 2 threads.
        for threads in [1, 2] {
            Parallel.configure(threads: threads)
            for (index, image) in input.splitBatch().enumerated() {
                let single = model(image.nchwToNHWC())
                let reference = Tensor(shape: [1, 1000], data: Array(expected.data[(index * 1000)..<((index + 1) * 1000)]))
                let singleError = Tensor.maxRelativeError(single, reference)
                XCTAssertLessThanOrEqual(singleError, 1e-4, "image \(index), \(threads) threads: \(singleError)")
            }
        }
        Parallel.configure(threads: nil)

        // The photos are a cat (ImageNet 281-285) and Grace Hopper in uniform (652 military uniform,
        // 400 academic gown, 667 mortarboard): the top-1 must be one of those.
        let top = batched.topK(1).map { $0[0].index }
        XCTAssertTrue((281...285).contains(top[0]), "cat photo top-1 is \(top[0])")
        XCTAssertTrue([400, 652, 667].contains(top[1]), "Grace Hopper top-1 is \(top[1])")
        XCTAssertEqual(card.labels.label(top[0]).isEmpty, false)
    }

    /// `sluice benchmark --layers`: the timed forward pass gives the plain one's logits and names every
    /// convolution of the official module tree once per image (the early blocks run per image).
    func testLayerTimedForwardNamesEveryConvolutionAndKeepsTheLogits() throws {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        let model = try XCTUnwrap(try card.makeClassifier(weights: Checkpoint.load(try TestResources.lite0Weights()).tensors)
                                  as? any LayerTimedClassifier)
        let input = try NPY.read(contentsOf: Self.fixtures.appendingPathComponent("input.npy")).nchwToNHWC()
        var layers: [String: Int] = [:]
        let timed = model(input) { layer, milliseconds in
            XCTAssertGreaterThanOrEqual(milliseconds, 0)
            layers[layer, default: 0] += 1
        }
        XCTAssertEqual(timed, model(input))
        let convolutions = Set(card.parameterShapes.map(\.0).filter { $0.hasSuffix("_conv.weight") || $0.hasPrefix("_conv_") }
            .map { String($0.dropLast(".weight".count)) })
        XCTAssertEqual(Set(layers.keys), convolutions.union(["_avg_pooling", "_fc"]))
        XCTAssertEqual(layers["_conv_stem"], 2, "stem once per image")
        XCTAssertEqual(layers["_blocks.15._project_conv"], 1, "late blocks once per batch")
        XCTAssertEqual(layers["_fc"], 1)
    }

    func testParameterListMatchesOfficialCheckpoint() throws {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        let weights = try Checkpoint.load(try TestResources.lite0Weights())
        XCTAssertEqual(WeightCheck.problems(weights.tensors, against: card), [])
        // 4 BatchNorm buffers + weight per conv, and the official count of num_batches_tracked.
        XCTAssertEqual(card.parameterShapes.count + weights.keys.filter { $0.hasSuffix("num_batches_tracked") }.count,
                       weights.count)
    }

    func testMisshapenAndMissingTensorsAreAllReported() throws {
        let card = try ModelRegistry.card(named: "efficientnet_lite0")
        var weights: [String: Tensor] = [:]
        for (key, shape) in card.parameterShapes { weights[key] = Tensor(zeros: shape) }
        weights["_fc.weight"] = Tensor(zeros: [10, 1280])
        weights["_blocks.3._bn1.running_var"] = nil
        weights["_conv_stem.bias"] = Tensor(zeros: [32])
        let problems = WeightCheck.problems(weights, against: card)
        XCTAssertEqual(problems, ["missing _blocks.3._bn1.running_var [144]",
                                  "_fc.weight has shape [10, 1280], expected [1000, 1280]",
                                  "unexpected _conv_stem.bias"])
        XCTAssertThrowsError(try card.makeClassifier(weights: weights)) { error in
            XCTAssertTrue("\(error)".contains("3 problem(s)"), "\(error)")
        }
    }
}
