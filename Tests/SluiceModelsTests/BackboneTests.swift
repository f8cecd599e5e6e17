import Foundation
import XCTest
import SluiceModels
import SluiceTensor

/// HorNet and ViG-H as image backbones: `features` gives each stage's output, and the classifier is its
/// head over the last one. The head is recomputed here from the checkpoint's own tensors (LayerNorm,
/// mean pool, linear), so a feature that is not the stage output the logits come from fails.
final class BackboneTests: XCTestCase {
    /// LayerNorm over the last axis (biased variance) of [rows, C] values.
    func layerNorm(_ x: [Float], channels c: Int, weight: Tensor, bias: Tensor, eps: Float) -> [Float] {
        var out = x
        for row in 0..<(x.count / c) {
            let values = x[(row * c)..<((row + 1) * c)].map(Double.init)
            let mean = values.reduce(0, +) / Double(c)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(c)
            for k in 0..<c {
                out[row * c + k] = Float((values[k] - mean) / (variance + Double(eps)).squareRoot()) * weight.data[k] + bias.data[k]
            }
        }
        return out
    }

    /// Mean over the spatial positions of each image of [N, h, w, C].
    func meanPool(_ x: [Float], images n: Int, channels c: Int) -> [Float] {
        let positions = x.count / (n * c)
        return (0..<(n * c)).map { i in
            let (image, k) = (i / c, i % c)
            return Float((0..<positions).map { Double(x[(image * positions + $0) * c + k]) }.reduce(0, +) / Double(positions))
        }
    }

    func linear(_ x: [Float], images n: Int, weight: Tensor, bias: Tensor) -> [Float] {
        let (outs, ins) = (weight.shape[0], weight.shape[1])
        return (0..<(n * outs)).map { i in
            let (image, o) = (i / outs, i % outs)
            return (0..<ins).reduce(bias.data[o]) { $0 + x[image * ins + $1] * weight.data[o * ins + $1] }
        }
    }

    func assertClose(_ a: [Float], _ b: [Float], _ name: String) {
        XCTAssertEqual(a.count, b.count, name)
        let scale = b.map(abs).max() ?? 1
        let error = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(error / scale, 1e-4, "\(name): head over features[-1] differs from the logits")
    }

    func testHorNetStageFeaturesFeedItsHead() throws {
        let item = try HorNetTests.namedCase("reduced_7x7_nonsquare")
        let stateDict = try HorNetTests.weights(for: item)
        let model = try HorNetTests.model(item, stateDict)
        let input = HorNetRecipe.input(item.inputShape).nchwToNHWC()
        let features = model.features(input)
        let (n, h, w) = (input.shape[0], input.shape[1], input.shape[2])
        XCTAssertEqual(model.stageChannels, item.configuration.dims)
        XCTAssertEqual(features.map(\.shape), (0..<4).map { [n, h / (4 << $0), w / (4 << $0), item.configuration.dims[$0]] })
        let c = model.stageChannels[3]
        let t = stateDict.tensors
        let pooled = meanPool(features[3].data, images: n, channels: c)
        let normed = layerNorm(pooled, channels: c, weight: t["norm.weight"]!, bias: t["norm.bias"]!, eps: 1e-6)
        assertClose(linear(normed, images: n, weight: t["head.weight"]!, bias: t["head.bias"]!), model(input).data, "HorNet")
    }

    func testViGHStageFeaturesFeedItsHead() throws {
        let item = try ViGHTests.namedCase("h_nonsquare_odd")
        let card = ModelRegistry.vigHCard(name: "vig_h", configuration: item.configuration)
        let stateDict = try card.sanitize(ViGRecipe.stateDict(ViGHTests.parameterShapes(item.configuration)))
        guard case .classifier(let loaded) = try card.load(stateDict: stateDict), let model = loaded as? ViGH else {
            return XCTFail("a ViG-H card builds a ViGH classifier")
        }
        let input = ViGRecipe.input(item.inputShape).nchwToNHWC()
        let features = model.features(input)
        XCTAssertEqual(model.stageChannels, item.configuration.dims)
        XCTAssertEqual(features.count, item.configuration.dims.count)
        // 60x44 through the stride-4 stem, then stride-2 convolutions with padding 1: 15x11, 8x6, 4x3, 2x2.
        XCTAssertEqual(features.map { Array($0.shape[1...]) },
                       zip([(15, 11), (8, 6), (4, 3), (2, 2)], item.configuration.dims).map { [$0.0.0, $0.0.1, $0.1] })
        let c = model.stageChannels.last!, n = input.shape[0]
        let t = stateDict.tensors
        let normed = layerNorm(features.last!.data, channels: c, weight: t["classifier.norm.weight"]!,
                               bias: t["classifier.norm.bias"]!, eps: 1e-5)
        let pooled = meanPool(normed, images: n, channels: c)
        assertClose(linear(pooled, images: n, weight: t["classifier.head.weight"]!, bias: t["classifier.head.bias"]!),
                    model(input).data, "ViG-H")
    }
}
