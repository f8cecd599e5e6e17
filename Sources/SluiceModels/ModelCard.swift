import Foundation
import SluiceMedia
import SluiceTensor

/// What Sluice knows about a named model: its family, its task, what it takes in, its labels, and how
/// to build it from official weights.
public struct ModelCard: Sendable {
    public var name: String
    public var family: String
    /// The official source this implementation follows.
    public var reference: String
    public var task: ModelTask
    /// What the model takes in, and so how images and frames are prepared for it.
    public var input: InputSpec
    /// Names of the classes (classification, segmentation) or answers (question answering).
    public var labels: LabelSet
    /// Keys a checkpoint may carry that inference does not use.
    public var ignoredKeySuffixes: [String]
    /// What joins module paths in the official checkpoint's keys: "." (PyTorch) or "/" (Flax .npz).
    public var keySeparator = "."
    /// Which other registered model a checkpoint that does not fit looks like, if the family can tell.
    public var recognize: (@Sendable ([String: Tensor]) -> String?)?
    /// Builds the model, asking the reader for every weight by its official name.
    let construct: @Sendable (WeightReader) throws -> LoadedModel
    /// Maps a checkpoint's key names to the official ones before validation (e.g. a re-release that
    /// renamed modules); identity by default.
    public var normalizeKeys: @Sendable (StateDict) throws -> StateDict = { $0 }

    public init(name: String, family: String, reference: String, task: ModelTask, input: InputSpec, labels: LabelSet,
                ignoredKeySuffixes: [String] = [], construct: @escaping @Sendable (WeightReader) throws -> LoadedModel,
                normalizeKeys: @escaping @Sendable (StateDict) throws -> StateDict = { $0 }) {
        self.name = name; self.family = family; self.reference = reference; self.task = task; self.input = input
        self.labels = labels; self.ignoredKeySuffixes = ignoredKeySuffixes; self.construct = construct
        self.normalizeKeys = normalizeKeys
    }

    /// The fixed-size crop recipe, for models that take one (every classifier here).
    public var preprocessing: Preprocessing? {
        if case .crop(let preprocessing) = input.image { return preprocessing }
        return nil
    }

    /// What the model produces, in words (`sluice models list`).
    public var outputs: String {
        switch task {
        case .imageClassification: return "logits over \(labels.labels.count) \(labels.name) classes"
        case .semanticSegmentation: return "per-pixel logits over \(labels.labels.count) \(labels.name) classes"
        case .videoClassification: return "per-frame logits over \(labels.labels.count) \(labels.name) classes"
        case .videoObjectSegmentation: return "per-frame object masks"
        case .videoQuestionAnswering: return "scores over \(labels.labels.count) answers"
        }
    }

    /// Official parameter names and PyTorch shapes, in `state_dict()` order (recorded by building the model).
    public var parameterShapes: [(String, [Int])] {
        (try? WeightReader.parameterShapes(separator: keySeparator, construct)) ?? []
    }

    /// Builds the model from `weights`, then throws one error listing every missing, mis-shaped and
    /// unexpected tensor, if any.
    public func load(_ weights: WeightReader, source: String = "weights") throws -> LoadedModel {
        let model = try construct(weights)
        do {
            try weights.finish(model: name, source: source)
        } catch ModelError.weightsMismatch(let model, let source, var problems) {
            if let tensors = weights.log.tensors, let other = recognize?(tensors), other != name {
                problems.insert("the checkpoint looks like \(other)", at: 0)
            }
            throw ModelError.weightsMismatch(model: model, source: source, problems: problems)
        }
        return model
    }

    /// Normalises the key names of a checkpoint, validates it and builds the model.
    public func load(stateDict: StateDict, source: String = "weights") throws -> LoadedModel {
        try load(reader(sanitize(stateDict).tensors), source: source)
    }

    /// A reader of `tensors` under this card's key conventions.
    public func reader(_ tensors: [String: Tensor]) -> WeightReader {
        WeightReader(tensors, ignoredKeySuffixes: ignoredKeySuffixes, separator: keySeparator)
    }

    public func makeClassifier(weights: [String: Tensor]) throws -> any ImageClassifier {
        try classifier(load(reader(weights)))
    }

    /// Normalises the key names of a checkpoint, validates it and builds the classifier.
    public func makeClassifier(stateDict: StateDict, source: String = "weights") throws -> any ImageClassifier {
        try classifier(load(stateDict: stateDict, source: source))
    }

    func classifier(_ model: LoadedModel) throws -> any ImageClassifier {
        guard let classifier = model.classifier else { throw ModelError.notA("classifier", model: name, task: task) }
        return classifier
    }

    /// A checkpoint under official key names: without DataParallel's `module.` prefix, then through the
    /// family's renames (`normalizeKeys`).
    public func sanitize(_ stateDict: StateDict) throws -> StateDict {
        var dict = stateDict
        if !dict.isEmpty && dict.keys.allSatisfy({ $0.hasPrefix("module.") }) { dict = try dict.removingPrefix("module.") }
        return try normalizeKeys(dict)
    }
}

public enum ModelRegistry {
    public static let cards: [ModelCard] = [
        efficientNetLite(name: "efficientnet_lite0", variant: 0),
    ] + HorNetConfiguration.officialNames.map(horNet)
        + ViGConfiguration.officialNames.map { vigCard(name: $0, configuration: ViGConfiguration.named($0)!) }
        + ViGHConfiguration.officialNames.map { vigHCard(name: $0, configuration: ViGHConfiguration.named($0)!) }
        + upernetHorNetNames.map { upernetHorNet(name: $0)! }
        + TRecViTConfiguration.officialNames.map { trecViTCard(name: $0.name, configuration: .variant($0.variant)!) }

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
                         task: .imageClassification, input: .crop(preprocessing), labels: .imageNet1k,
                         ignoredKeySuffixes: ["num_batches_tracked"],
                         construct: { .classifier(EfficientNetLite(configuration: config, weights: $0)) })
    }
}

extension ModelRegistry {
    /// HorNet cards: official constructors at 224, torchvision-style ImageNet preprocessing (Resize 256
    /// bicubic, CenterCrop 224, ImageNet mean/std, as the official `datasets.py` evaluates below 384).
    static func horNet(name: String) -> ModelCard {
        horNetCard(name: name, configuration: HorNetConfiguration.named(name)!)
    }

    public static func horNetCard(name: String, configuration config: HorNetConfiguration) -> ModelCard {
        let labels = config.numClasses == 1000 ? LabelSet.imageNet1k : LabelSet(name: "imagenet21k", labels: [])
        return ModelCard(name: name, family: "hornet", reference: "hornet.py (github.com/raoyongming/HorNet)",
                         task: .imageClassification, input: .crop(.imageNet), labels: labels,
                         ignoredKeySuffixes: [],
                         construct: { .classifier(HorNet(configuration: config, weights: $0)) },
                         normalizeKeys: { try HorNet.sanitize($0) })
    }
}

extension ModelRegistry {
    /// TRecViT cards: the official tree and `.npz` key names; frames resized (shorter side 224, bilinear)
    /// and center-cropped to 224x224, then divided by 255 as the official Colab feeds them (no mean/std).
    public static func trecViTCard(name: String, configuration: TRecViTConfiguration) -> ModelCard {
        let input = Preprocessing(resizeShorterSide: configuration.gridHeight * configuration.patch,
                                  cropSize: configuration.gridHeight * configuration.patch, interpolation: .bilinear,
                                  mean: [0, 0, 0], std: [255, 255, 255], minimumSourceSide: configuration.patch)
        let labels = configuration.numClasses == 400 ? LabelSet.kinetics400 : LabelSet(name: "classes", labels: [])
        var card = ModelCard(name: name, family: "trecvit",
                             reference: "trecvit/modules.py with recurrentgemma/jax (github.com/google-deepmind/trecvit)",
                             task: .videoClassification, input: .crop(input), labels: labels,
                             construct: { .streamingVideo(TRecViT(configuration: configuration, weights: $0)) })
        card.keySeparator = "/"
        card.recognize = { TRecViTConfiguration.recognize($0) }
        return card
    }
}

public enum ModelError: Error, CustomStringConvertible {
    case unknownModel(String, known: [String])
    case weightsMismatch(model: String, source: String, problems: [String])
    case noWeights(model: String, searched: String)
    case notA(String, model: String, task: ModelTask)

    public var description: String {
        switch self {
        case .unknownModel(let name, let known):
            return "unknown model '\(name)' (known: \(known.joined(separator: ", ")))"
        case .weightsMismatch(let model, let source, let problems):
            return "\(source): weights do not fit \(model): \(problems.count) problem(s): "
                + problems.joined(separator: "; ")
        case .notA(let kind, let model, let task):
            return "\(model) is not a \(kind): it does \(task.rawValue)"
        case .noWeights(let model, let searched):
            return "no weights for \(model): pass --weights FILE or run `sluice models import FILE --model \(model)` (looked in \(searched))"
        }
    }
}

/// Checks a state dict against a model's parameter list and reports every problem at once.
public enum WeightCheck {
    public static func problems(_ weights: [String: Tensor], against card: ModelCard) -> [String] {
        let reader = card.reader(weights)
        _ = try? card.construct(reader)
        return reader.problems
    }
}

/// Class names for a model's outputs, and the colours masks draw them in.
public struct LabelSet: Sendable {
    public var name: String
    public var labels: [String]
    /// One colour per class for masks and overlays (nil: the PASCAL VOC colour map).
    public var palette: [RGBColor]?

    public init(name: String, labels: [String], palette: [RGBColor]? = nil) {
        self.name = name; self.labels = labels; self.palette = palette
    }

    /// The colour of class `index` in masks and overlays.
    public func color(_ index: Int) -> RGBColor {
        if let palette, index >= 0, index < palette.count { return palette[index] }
        return Palette.voc[((index % 256) + 256) % 256]
    }

    public static let imageNet1k = LabelSet(name: "imagenet1k", labels: imageNet1kLabels)
    public static let kinetics400 = LabelSet(name: "kinetics400", labels: kinetics400Labels)

    public func label(_ index: Int) -> String { index < labels.count ? labels[index] : "class \(index)" }
}
