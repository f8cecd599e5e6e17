// What a model takes in, and the one path that turns an image file or a decoded video frame into it.
// Model cards name an `InputSpec`; the pipeline only asks a `FramePreparer` built from it, so images and
// video frames are prepared by the same code.

import Foundation
import SluiceTensor

/// torchvision-style preparation of a fixed-size input: resize the shorter side, center crop,
/// normalise per channel on the 0…255 scale.
public struct Preprocessing: Codable, Sendable, Equatable {
    public enum Interpolation: String, Codable, Sendable { case bicubic, bilinear }
    public var resizeShorterSide: Int
    public var cropSize: Int
    public var interpolation: Interpolation
    /// Per-channel mean and std on the 0…255 pixel scale.
    public var mean: [Float]
    public var std: [Float]
    /// Videos whose frames have a shorter side below this are refused instead of blown up (a patch model
    /// would see a handful of real pixels smeared over each patch); nil: any size.
    public var minimumSourceSide: Int?

    public init(resizeShorterSide: Int, cropSize: Int, interpolation: Interpolation, mean: [Float], std: [Float],
                minimumSourceSide: Int? = nil) {
        self.resizeShorterSide = resizeShorterSide; self.cropSize = cropSize; self.interpolation = interpolation
        self.mean = mean; self.std = std; self.minimumSourceSide = minimumSourceSide
    }

    /// TensorFlow Lite convention of the EfficientNet-Lite models: (x − 127) / 128.
    public static let tfLite = Preprocessing(resizeShorterSide: 256, cropSize: 224, interpolation: .bicubic,
                                             mean: [127, 127, 127], std: [128, 128, 128])
    /// torchvision ImageNet statistics.
    public static let imageNet = Preprocessing(resizeShorterSide: 256, cropSize: 224, interpolation: .bicubic,
                                               mean: [0.485 * 255, 0.456 * 255, 0.406 * 255],
                                               std: [0.229 * 255, 0.224 * 255, 0.225 * 255])
}

/// How a model wants each image or video frame.
public enum ImageInput: Sendable, Equatable {
    /// A square crop of fixed size (classifiers, per-frame video models).
    case crop(Preprocessing)
    /// The picture at its own aspect ratio: scaled down (never up) to fit within `maxWidth` x
    /// `maxHeight` when given, then normalised; the model handles any size (dense prediction). Sides need
    /// not be multiples of anything: a model that needs that pads inside its forward pass.
    case anySize(maxWidth: Int?, maxHeight: Int?, interpolation: Preprocessing.Interpolation, mean: [Float], std: [Float])
    /// mmseg's test-time `Resize(img_scale=(longSide, shortSide), keep_ratio=True)`: the picture scaled up
    /// or down by min(longSide / its longer side, shortSide / its shorter side), each side rounded as
    /// ⌊x·f + 0.5⌋ (dense prediction; outputs are brought back to the source size).
    case rescaled(longSide: Int, shortSide: Int, interpolation: Preprocessing.Interpolation, mean: [Float], std: [Float])

    public var normalization: PixelNormalization {
        switch self {
        case .crop(let p): return PixelNormalization(mean: p.mean, std: p.std)
        case .anySize(_, _, _, let mean, let std), .rescaled(_, _, _, let mean, let std):
            return PixelNormalization(mean: mean, std: std)
        }
    }

    var filter: ResampleFilter {
        switch self {
        case .crop(let p): return p.interpolation == .bicubic ? .bicubic : .bilinear
        case .anySize(_, _, let interpolation, _, _), .rescaled(_, _, let interpolation, _, _):
            return interpolation == .bicubic ? .bicubic : .bilinear
        }
    }

    /// The size `rescaled` brings a width x height picture to (identity for other inputs' own sizes).
    public static func rescaledSize(width: Int, height: Int, longSide: Int, shortSide: Int) -> (width: Int, height: Int) {
        let factor = min(Double(longSide) / Double(max(width, height)), Double(shortSide) / Double(min(width, height)))
        return (max(1, Int(Double(width) * factor + 0.5)), max(1, Int(Double(height) * factor + 0.5)))
    }

    /// The fixed input side, when there is one (a slot pool can then be sized up front).
    public var fixedSide: Int? {
        if case .crop(let p) = self { return p.cropSize }
        return nil
    }
}

/// A model's inputs: images or frames, and for question answering a text.
public struct InputSpec: Sendable, Equatable {
    public var image: ImageInput
    /// Question text, tokenised by the named tokenizer to at most `maxTokens` tokens.
    public var text: TextInput?

    public struct TextInput: Sendable, Equatable {
        public var tokenizer: String
        public var maxTokens: Int
        public init(tokenizer: String, maxTokens: Int) { self.tokenizer = tokenizer; self.maxTokens = maxTokens }
    }

    public init(image: ImageInput, text: TextInput? = nil) { self.image = image; self.text = text }

    public static func crop(_ preprocessing: Preprocessing) -> InputSpec { InputSpec(image: .crop(preprocessing)) }
}

/// Turns image files and decoded video frames into model inputs as an `ImageInput` says: decode, resize,
/// crop, normalise into a caller's buffer (one slot of a batch).
public struct FramePreparer: Sendable {
    public let input: ImageInput
    let decoder = ImageDecoder()
    let normalization: PixelNormalization

    public init(_ input: ImageInput) {
        self.input = input
        normalization = input.normalization
    }

    /// Decodes an in-memory image file without bringing it to the model's geometry.
    public func decode(data: Data, name: String) throws -> RGBImage {
        try decoder.decode(data, name: name)
    }

    /// Brings a decoded picture to the model's geometry (resize and crop, or fit within the bounds).
    public func prepare(image: RGBImage) -> RGBImage {
        switch input {
        case .crop(let p):
            return image.resizeShorterSide(to: p.resizeShorterSide, filter: input.filter).centerCrop(p.cropSize)
        case .anySize, .rescaled:
            return fitWithinBounds(image)
        }
    }

    /// Decodes `path` without bringing it to the model's geometry (the source picture, for outputs at
    /// its size and overlays); `prepare(image:)` finishes it.
    public func decode(path: String) throws -> RGBImage {
        try decoder.decode(contentsOf: URL(fileURLWithPath: path))
    }

    /// Brings a decoded video frame (already scaled by the reader as `videoOptions` asked) to the model's
    /// geometry.
    public func prepare(frame: RGBImage) -> RGBImage {
        switch input {
        case .crop(let p): return frame.centerCrop(p.cropSize)
        case .anySize, .rescaled: return fitWithinBounds(frame)
        }
    }

    /// Writes the normalised pixels of a prepared image (HWC) into `destination`.
    public func normalize(_ prepared: RGBImage, into destination: UnsafeMutableBufferPointer<Float>) {
        prepared.writeNormalized(into: destination, normalization)
    }

    /// How a video reader should scale frames for this input: the shorter side to the resize size with
    /// the matching swscale filter (crop), or within the bounds (any size).
    public var videoOptions: VideoReaderOptions {
        let scaling: VideoScaling = input.filter == .bicubic ? .bicubic : .bilinear
        switch input {
        case .crop(let p):
            return VideoReaderOptions(size: .shorterSide(p.resizeShorterSide), threads: 2, scaling: scaling)
        case .anySize, .rescaled:
            return VideoReaderOptions(size: .native, threads: 2, scaling: scaling)
        }
    }

    private func fitWithinBounds(_ image: RGBImage) -> RGBImage {
        if case .rescaled(let long, let short, _, _, _) = input {
            let size = ImageInput.rescaledSize(width: image.width, height: image.height, longSide: long, shortSide: short)
            return image.resized(width: size.width, height: size.height, filter: input.filter)
        }
        guard case .anySize(let maxWidth, let maxHeight, _, _, _) = input else { return image }
        // mmseg's Resize(keep_ratio=True) semantics, limited to shrinking: the largest scale at which
        // both sides fit, rounded to the nearest pixel.
        var scale = 1.0
        if let maxWidth, image.width > maxWidth { scale = min(scale, Double(maxWidth) / Double(image.width)) }
        if let maxHeight, image.height > maxHeight { scale = min(scale, Double(maxHeight) / Double(image.height)) }
        guard scale < 1 else { return image }
        let width = max(1, Int((Double(image.width) * scale).rounded()))
        let height = max(1, Int((Double(image.height) * scale).rounded()))
        return image.resized(width: width, height: height, filter: input.filter)
    }
}
