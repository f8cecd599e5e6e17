// The task contracts a model family implements. A model card names its task; loading it gives a
// `LoadedModel`, whose case says which of these protocols the pipeline drives.
//
// Tensors are float32, channels-last: images [N, H, W, 3] already prepared as the card's `InputSpec`
// says, feature maps [N, h, w, C].

import SluiceTensor

public enum ModelTask: String, Sendable, Codable, CaseIterable {
    case imageClassification = "image-classification"
    case semanticSegmentation = "semantic-segmentation"
    case videoClassification = "video-classification"
    case videoObjectSegmentation = "video-object-segmentation"
    case videoQuestionAnswering = "video-question-answering"

    /// Whether the model's outputs are masks (a `masks:` sink applies).
    public var makesMasks: Bool { self == .semanticSegmentation || self == .videoObjectSegmentation }

    /// Whether the model keeps state from frame to frame (one ordered session per video).
    public var isStreamingVideo: Bool { self == .videoClassification || self == .videoObjectSegmentation }
}

/// A network that turns images into a pyramid of stage features (heads for classification or
/// segmentation compose over it).
public protocol ImageBackbone: Sendable {
    /// Channels of each returned stage, shallow to deep.
    var stageChannels: [Int] { get }
    /// Stage features [N, h_i, w_i, stageChannels[i]] for input [N, H, W, 3].
    func features(_ input: Tensor) -> [Tensor]
}

/// A model that maps a batch of prepared images to class logits.
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

/// A model that labels every pixel: input [N, H, W, 3] of any size the model allows → class logits
/// [N, H, W, numClasses] at the input's size.
public protocol ImageSegmenter: Sendable {
    var numClasses: Int { get }
    func segment(_ input: Tensor) -> Tensor
}

/// One class index per pixel, row-major: a segmentation mask or a video object mask (0 = background).
public struct ClassMap: Sendable, Equatable {
    public let width: Int
    public let height: Int
    public var classes: [UInt16]

    public init(width: Int, height: Int, classes: [UInt16]) {
        precondition(classes.count == width * height, "class map of \(width)x\(height) holds \(classes.count) values")
        self.width = width; self.height = height; self.classes = classes
    }

    /// The arg-max class of each pixel of logits [1, H, W, C] (the first of equal maxima, as torch.argmax).
    public init(argmaxOf logits: Tensor) {
        precondition(logits.rank == 4 && logits.shape[0] == 1, "expected logits [1, H, W, C], got \(logits.shape)")
        let (h, w, c) = (logits.shape[1], logits.shape[2], logits.shape[3])
        var classes = [UInt16](repeating: 0, count: h * w)
        logits.data.withUnsafeBufferPointer { x in
            for p in 0..<(h * w) {
                var best = 0, bestValue = x[p * c]
                for k in 1..<max(c, 1) where x[p * c + k] > bestValue { best = k; bestValue = x[p * c + k] }
                classes[p] = UInt16(best)
            }
        }
        self.init(width: w, height: h, classes: classes)
    }
}

/// What a frame-by-frame video model produces for one frame.
public enum FrameOutput: Sendable, Equatable {
    /// Class logits for the video so far (video classification).
    case logits([Float])
    /// A mask for this frame (video object segmentation).
    case mask(ClassMap)
}

/// What seeds a video session.
public enum VideoPrompt: Sendable, Equatable {
    case none
    /// Object masks for the first frame (video object segmentation), at that frame's size.
    case firstFrameMasks(ClassMap)
}

/// A stateful video model: one session per video, stepped one frame at a time in display order. The
/// session's state has a fixed size, so memory does not grow with the video's length.
public protocol StreamingVideoModel: Sendable {
    func openSession(prompt: VideoPrompt) throws -> any VideoSession
}

public protocol VideoSession: AnyObject {
    /// Feeds the next frame [1, H, W, 3]; the output for this frame.
    func step(_ frame: Tensor) throws -> FrameOutput
}

/// Frames and a question in, a score per candidate answer out.
public protocol VideoQuestionAnswerer: Sendable {
    var numAnswers: Int { get }
    /// Answer logits [numAnswers] for frames [T, H, W, 3] and the question's token ids.
    func answer(frames: Tensor, question tokens: [Int32]) throws -> [Float]
}

/// A model built from a card and its weights, by task.
public enum LoadedModel: Sendable {
    case classifier(any ImageClassifier)
    case segmenter(any ImageSegmenter)
    case streamingVideo(any StreamingVideoModel)
    case questionAnswerer(any VideoQuestionAnswerer)

    public var classifier: (any ImageClassifier)? {
        if case .classifier(let model) = self { return model }
        return nil
    }
}
