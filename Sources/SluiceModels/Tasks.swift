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
        self.init(width: logits.shape[2], height: logits.shape[1],
                  classes: logits.argmaxLastAxis().map { UInt16(truncatingIfNeeded: $0) })
    }
}

extension ClassMap {
    /// The arg-max class of each pixel of logits [1, h, w, C] bilinearly resized (align_corners=False) to
    /// `width` x `height`, as mmseg resizes logits to the original image before its argmax, without ever
    /// holding the resized logits. Where the four source pixels around an output pixel agree on their
    /// class, so does the interpolation (each class's value is the same convex combination, and float
    /// sums are monotonic), so only pixels near class boundaries interpolate all C logits.
    public init(argmaxOf logits: Tensor, width: Int, height: Int) {
        precondition(logits.rank == 4 && logits.shape[0] == 1, "expected logits [1, H, W, C], got \(logits.shape)")
        let (h, w, c) = (logits.shape[1], logits.shape[2], logits.shape[3])
        if h == height && w == width { self.init(argmaxOf: logits); return }
        let source = logits.argmaxLastAxis()
        let ys = Interpolate.taps(from: h, to: height), xs = Interpolate.taps(from: w, to: width)
        var classes = [UInt16](repeating: 0, count: width * height)
        logits.data.withUnsafeBufferPointer { lp in
            source.withUnsafeBufferPointer { sp in
                classes.withUnsafeMutableBufferPointer { out in
                    let (l, s, o) = (UnsafeSendable(lp.baseAddress!), UnsafeSendable(sp.baseAddress!), UnsafeSendable(out.baseAddress!))
                    Parallel.forEachChunk(height, minChunk: max(1, 16384 / max(1, width))) { rows in
                        for oy in rows {
                            let ty = ys[oy]
                            for ox in 0..<width {
                                let tx = xs[ox]
                                let a = ty.i0 * w + tx.i0, b = ty.i0 * w + tx.i1, e = ty.i1 * w + tx.i0, f = ty.i1 * w + tx.i1
                                let k = s.value[a]
                                if s.value[b] == k && s.value[e] == k && s.value[f] == k {
                                    o.value[oy * width + ox] = UInt16(truncatingIfNeeded: k)
                                    continue
                                }
                                let (pa, pb, pe, pf) = (l.value + a * c, l.value + b * c, l.value + e * c, l.value + f * c)
                                var best = 0, bestValue = -Float.infinity
                                for ch in 0..<c {
                                    let v = ty.w0 * (tx.w0 * pa[ch] + tx.w1 * pb[ch]) + ty.w1 * (tx.w0 * pe[ch] + tx.w1 * pf[ch])
                                    if ch == 0 || v > bestValue { best = ch; bestValue = v }
                                }
                                o.value[oy * width + ox] = UInt16(truncatingIfNeeded: best)
                            }
                        }
                    }
                }
            }
        }
        self.init(width: width, height: height, classes: classes)
    }
}

/// A video classifier's verdict on one clip: the clip's number in its video (from 0), how many frames it
/// spans (the last frame is the one whose step returned it), and its logits.
public struct ClipLogits: Sendable, Equatable {
    public var index: Int
    public var frames: Int
    public var logits: [Float]
    public init(index: Int, frames: Int, logits: [Float]) { self.index = index; self.frames = frames; self.logits = logits }
}

/// What a frame-by-frame video model produces for one frame.
public enum FrameOutput: Sendable, Equatable {
    /// Class logits for the video (or its current clip) so far (video classification), and the clip this
    /// frame completed, if it completed one.
    case logits([Float], clip: ClipLogits? = nil)
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
    /// Feeds the next frames in order; an output per frame, as stepping them one at a time gives up to
    /// float rounding (a model may share work across them).
    func step(frames: [Tensor]) throws -> [FrameOutput]
    /// The video has ended: the clip its end cut short, for models that report clips.
    func finish() -> ClipLogits?
}

extension VideoSession {
    public func step(frames: [Tensor]) throws -> [FrameOutput] { try frames.map { try step($0) } }
    public func finish() -> ClipLogits? { nil }
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
