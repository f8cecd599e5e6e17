import Foundation
import SluiceMedia
import SluiceModels
import SluiceTensor

/// What an input item is: one image, or a video whose frames are chosen by a sampling policy.
public enum MediaKind: Sendable, Equatable {
    case image
    case video(VideoSampling)
}

/// What happens to a model's scores: softmax, the k best classes, and optionally only those whose
/// probability reaches a threshold.
public struct Postprocessing: Sendable, Equatable {
    public var topK: Int
    public var minScore: Float?
    /// Masks: add each class's COCO run-length encoding to the record.
    public var rle: Bool
    public init(topK: Int, minScore: Float? = nil, rle: Bool = false) {
        self.topK = topK; self.minScore = minScore; self.rle = rle
    }
}

/// A pipeline compiled against a loaded model: where frames come from, how each is prepared, which
/// model step runs them (batched across items, or one ordered session per video), how outputs become
/// record fields, and which artefact sinks see each frame as it passes.
public struct PipelinePlan: Sendable {
    /// The model as the plan uses it: its name for records, its input, its labels and the loaded network.
    public struct Model: Sendable {
        public var name: String
        public var input: ImageInput
        public var labels: LabelSet
        public var loaded: LoadedModel
        public init(name: String, input: ImageInput, labels: LabelSet, loaded: LoadedModel) {
            self.name = name; self.input = input; self.labels = labels; self.loaded = loaded
        }
    }

    public var model: Model
    public var media: MediaKind
    public var postprocessing: Postprocessing
    /// Folder for overlays: an H.264 video per video source (each sampled frame with its top-1 label or
    /// mask), a PNG per image.
    public var overlayFolder: String?
    /// Folder for mask images (segmentation outputs): one palette PNG per image or frame.
    public var maskFolder: String?

    public init(model: Model, media: MediaKind, postprocessing: Postprocessing, overlayFolder: String? = nil,
                maskFolder: String? = nil) throws {
        self.model = model; self.media = media; self.postprocessing = postprocessing
        self.overlayFolder = overlayFolder; self.maskFolder = maskFolder
        if case .streamingVideo = model.loaded, media == .image {
            throw PlanError.needsVideo(model.name)
        }
        if case .questionAnswerer = model.loaded {
            throw PlanError.unsupported(model.name, "question answering has no pipeline source for questions yet")
        }
        if maskFolder != nil, case .classifier = model.loaded {
            throw PlanError.unsupported(model.name, "a classifier makes no masks for a mask sink")
        }
    }

    /// A plan for a registered model: the card says how inputs are prepared and what the labels are.
    public init(card: ModelCard, loaded: LoadedModel, media: MediaKind, postprocessing: Postprocessing,
                overlayFolder: String? = nil, maskFolder: String? = nil) throws {
        try self.init(model: Model(name: card.name, input: card.input.image, labels: card.labels, loaded: loaded),
                      media: media, postprocessing: postprocessing, overlayFolder: overlayFolder,
                      maskFolder: maskFolder)
    }
}

public enum PlanError: Error, CustomStringConvertible {
    case needsVideo(String)
    case unsupported(String, String)
    public var description: String {
        switch self {
        case .needsVideo(let model): return "\(model) is a video model: the source must be `video:`"
        case .unsupported(let model, let why): return "\(model): \(why)"
        }
    }
}

/// Turns model outputs into record fields: top-k predictions from scores, a mask summary from a class map.
public struct OutputMapper: Sendable {
    let modelName: String
    let labels: LabelSet
    let postprocessing: Postprocessing

    public init(modelName: String, labels: LabelSet, postprocessing: Postprocessing) {
        self.modelName = modelName; self.labels = labels; self.postprocessing = postprocessing
    }

    /// Records for a batch of classifier logits [N, classes], one per frame.
    public func predictions(fromLogits logits: Tensor) -> [[Prediction]] {
        Softmax.lastAxis(logits).topK(postprocessing.topK).map { row in
            var predictions = row.map { Prediction(index: $0.index, label: labels.label($0.index), score: $0.value) }
            if let minScore = postprocessing.minScore { predictions = predictions.filter { $0.score >= minScore } }
            return predictions
        }
    }

    /// Each class present in the map with its pixel count and share, most pixels first (ties: lower
    /// index first).
    public func summary(of map: ClassMap) -> MaskSummary {
        var histogram = [Int](repeating: 0, count: Int(map.classes.max() ?? 0) + 1)
        for value in map.classes { histogram[Int(value)] += 1 }
        let total = max(1, map.classes.count)
        let encodings = postprocessing.rle ? CocoRLE.encodeAll(classes: map.classes, width: map.width, height: map.height) : [:]
        let classes = histogram.enumerated().filter { $0.element > 0 }
            .sorted { $0.element != $1.element ? $0.element > $1.element : $0.offset < $1.offset }.map {
                MaskSummary.ClassArea(index: $0.offset, label: labels.label($0.offset), pixels: $0.element,
                                      fraction: Double($0.element) / Double(total), rle: encodings[UInt16($0.offset)])
            }
        return MaskSummary(width: map.width, height: map.height, classes: classes)
    }
}
