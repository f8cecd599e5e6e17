import Foundation
import SluiceModels
import SluiceTensor

/// Seeded random weights for every parameter a registered model's card lists, written as safetensors:
/// what a user gets end to end can be checked for models whose official weights are not here
/// (BatchNorm variances positive, layer scales small, fan-in scaled matrices).
public enum RandomWeights {
    public static func write(model: String, seed: UInt64, to url: URL) throws {
        var random = SplitMix64(seed: seed)
        let card = try ModelRegistry.card(named: model)
        let tensors = card.parameterShapes.map { key, shape -> (String, Tensor) in
            let count = shape.reduce(1, *)
            let fanIn = max(1, shape.dropFirst().reduce(1, *))
            let values: [Float] = (0..<count).map { _ in
                let u = Float.random(in: -1..<1, using: &random)
                if key.hasSuffix("running_var") { return 1 + 0.5 * u }
                if shape.count == 1 { return key.hasSuffix("bias") || key.hasSuffix("running_mean") ? 0.1 * u : 1 + 0.2 * u }
                if key.hasSuffix("gamma1") || key.hasSuffix("gamma2") { return 0.3 * u }
                return u * (3 / Float(fanIn)).squareRoot()
            }
            return (key, Tensor(shape: shape, data: values))
        }
        try Safetensors.write(tensors, to: url)
    }
}
