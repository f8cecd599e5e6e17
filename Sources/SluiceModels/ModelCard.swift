import Foundation
import SluiceTensor

/// A model that maps a batch of preprocessed NHWC images to class logits.
public protocol ImageClassifier: Sendable {
    var numClasses: Int { get }
    /// Logits [N, numClasses] for input [N, H, W, 3].
    func callAsFunction(_ input: Tensor) -> Tensor
}

/// A classifier that can report the wall time of each layer of a forward pass (`sluice benchmark
/// --layers`), under the official module names so they line up with other engines' profiles.
public protocol LayerTimedClassifier: ImageClassifier {
    func callAsFunction(_ input: Tensor, layerTime: (_ layer: String, _ milliseconds: Double) -> Void) -> Tensor
}

/// How an image becomes the model's input tensor (torchvision-style: resize the shorter side, center
/// crop, normalise per channel on the 0…255 scale).
public struct Preprocessing: Codable, Sendable, Equatable {
    public enum Interpolation: String, Codable, Sendable { case bicubic, bilinear }
    public var resizeShorterSide: Int
    public var cropSize: Int
    public var interpolation: Interpolation
    /// Per-channel mean and std on the 0…255 pixel scale.
    public var mean: [Float]
    public var std: [Float]

    /// TensorFlow Lite convention of the EfficientNet-Lite models: (x − 127) / 128.
    public static let tfLite = Preprocessing(resizeShorterSide: 256, cropSize: 224, interpolation: .bicubic,
                                             mean: [127, 127, 127], std: [128, 128, 128])
    /// torchvision ImageNet statistics.
    public static let imageNet = Preprocessing(resizeShorterSide: 256, cropSize: 224, interpolation: .bicubic,
                                               mean: [0.485 * 255, 0.456 * 255, 0.406 * 255],
                                               std: [0.229 * 255, 0.224 * 255, 0.225 * 255])
}

/// What Sluice knows about a named model: its family, configuration, preprocessing and labels.
public struct ModelCard: Sendable {
    public var name: String
    public var family: String
    /// The official source this implementation follows.
    public var reference: String
    public var preprocessing: Preprocessing
    public var labels: LabelSet
    /// Official parameter names and PyTorch shapes.
    public var parameterShapes: [(String, [Int])]
    /// Keys a checkpoint may carry that inference does not use.
    public var ignoredKeySuffixes: [String]
    let build: @Sendable ([String: Tensor]) -> any ImageClassifier
    /// Maps a checkpoint's key names to the official ones before validation (e.g. a re-release that
    /// renamed modules); identity by default.
    public var normalizeKeys: @Sendable (StateDict) throws -> StateDict = { $0 }

    public func makeClassifier(weights: [String: Tensor]) throws -> any ImageClassifier {
        try WeightCheck.validate(weights, against: self)
        return build(weights)
    }

    /// Normalises the key names of a checkpoint, validates it and builds the model.
    public func makeClassifier(stateDict: StateDict, source: String = "weights") throws -> any ImageClassifier {
        let tensors = try normalizeKeys(stateDict).tensors
        try WeightCheck.validate(tensors, against: self, source: source)
        return build(tensors)
    }
}

public enum ModelRegistry {
    public static let cards: [ModelCard] = [
        efficientNetLite(name: "efficientnet_lite0", variant: 0),
    ] + HorNetConfiguration.officialNames.map(horNet)
        + ViGConfiguration.officialNames.map { vigCard(name: $0, configuration: ViGConfiguration.named($0)!) }
        + ViGHConfiguration.officialNames.map { vigHCard(name: $0, configuration: ViGHConfiguration.named($0)!) }

    public static var names: [String] { cards.map(\.name) }

    public static func card(named name: String) throws -> ModelCard {
        guard let card = cards.first(where: { $0.name == name }) else {
            throw ModelError.unknownModel(name, known: names)
        }
        return card
    }

    static func efficientNetLite(name: String, variant: Int) -> ModelCard {
        let config = EfficientNetLiteConfiguration.lite(variant)
        var preprocessing = Preprocessing.tfLite
        preprocessing.cropSize = config.imageSize
        preprocessing.resizeShorterSide = Int((Double(config.imageSize) * 256 / 224).rounded())
        return ModelCard(name: name, family: "efficientnet_lite",
                         reference: "efficientnet_lite_pytorch/model.py (PyPI efficientnet-lite-pytorch 0.1.0)",
                         preprocessing: preprocessing, labels: .imageNet1k,
                         parameterShapes: EfficientNetLite.parameterShapes(config),
                         ignoredKeySuffixes: ["num_batches_tracked"],
                         build: { EfficientNetLite(configuration: config, weights: $0) })
    }
}

extension ModelRegistry {
    /// HorNet cards: official constructors at 224, torchvision-style ImageNet preprocessing (Resize 256
    /// bicubic, CenterCrop 224, ImageNet mean/std, as the official `datasets.py` evaluates below 384).
    static func horNet(name: String) -> ModelCard {
        let config = HorNetConfiguration.named(name)!
        let labels = config.numClasses == 1000 ? LabelSet.imageNet1k : LabelSet(name: "imagenet21k", labels: [])
        return ModelCard(name: name, family: "hornet", reference: "hornet.py (github.com/raoyongming/HorNet)",
                         preprocessing: .imageNet, labels: labels,
                         parameterShapes: HorNet.parameterShapes(config), ignoredKeySuffixes: [],
                         build: { HorNet(configuration: config, weights: $0) },
                         normalizeKeys: { try HorNet.sanitize($0) })
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case unknownModel(String, known: [String])
    case weightsMismatch(model: String, source: String, problems: [String])
    case noWeights(model: String, searched: String)

    public var description: String {
        switch self {
        case .unknownModel(let name, let known):
            return "unknown model '\(name)' (known: \(known.joined(separator: ", ")))"
        case .weightsMismatch(let model, let source, let problems):
            return "\(source): weights do not fit \(model): \(problems.count) problem(s): "
                + problems.joined(separator: "; ")
        case .noWeights(let model, let searched):
            return "no weights for \(model): pass --weights FILE or run `sluice models import FILE --model \(model)` (looked in \(searched))"
        }
    }
}

/// Checks a state dict against a model's parameter list and reports every problem at once.
public enum WeightCheck {
    public static func problems(_ weights: [String: Tensor], against card: ModelCard) -> [String] {
        var problems: [String] = []
        var expected = Set<String>()
        for (key, shape) in card.parameterShapes {
            expected.insert(key)
            guard let tensor = weights[key] else { problems.append("missing \(key) \(shape)"); continue }
            if tensor.shape != shape { problems.append("\(key) has shape \(tensor.shape), expected \(shape)") }
        }
        let unexpected = weights.keys.filter { key in
            !expected.contains(key) && !card.ignoredKeySuffixes.contains(where: { key.hasSuffix($0) })
        }.sorted()
        problems += unexpected.map { "unexpected \($0)" }
        return problems
    }

    public static func validate(_ weights: [String: Tensor], against card: ModelCard, source: String = "weights") throws {
        let found = problems(weights, against: card)
        if !found.isEmpty { throw ModelError.weightsMismatch(model: card.name, source: source, problems: found) }
    }
}

/// Class names for a model's outputs.
public struct LabelSet: Sendable {
    public var name: String
    public var labels: [String]

    public static let imageNet1k = LabelSet(name: "imagenet1k", labels: imageNet1kLabels)

    public func label(_ index: Int) -> String { index < labels.count ? labels[index] : "class \(index)" }
}
