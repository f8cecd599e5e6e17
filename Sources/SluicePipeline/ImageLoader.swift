import Foundation
import SluiceMedia
import SluiceModels

/// Decodes an image file and turns it into a model's input exactly as the model card says: resize the
/// shorter side, center crop, normalise, written straight into one slot of a batch buffer.
struct ImageLoader: Sendable {
    let preprocessing: Preprocessing
    let decoder = ImageDecoder()
    let normalization: PixelNormalization
    let filter: ResampleFilter

    init(_ preprocessing: Preprocessing) {
        self.preprocessing = preprocessing
        normalization = PixelNormalization(mean: preprocessing.mean, std: preprocessing.std)
        filter = preprocessing.interpolation == .bicubic ? .bicubic : .bilinear
    }

    func load(path: String, into slot: UnsafeMutablePointer<Float>) throws {
        let image = try decoder.decode(contentsOf: URL(fileURLWithPath: path))
            .resizeShorterSide(to: preprocessing.resizeShorterSide, filter: filter)
        writeInput(from: image, into: slot)
    }

    /// The last steps, for an image already resized (a video frame scaled by the reader): center crop and
    /// normalise into the slot.
    func writeInput(from resized: RGBImage, into slot: UnsafeMutablePointer<Float>) {
        let image = resized.centerCrop(preprocessing.cropSize)
        image.writeNormalized(into: UnsafeMutableBufferPointer(start: slot, count: image.pixels.count), normalization)
    }

    /// How a video reader should scale frames for this model: shorter side to the resize size, with the
    /// matching swscale filter.
    var videoOptions: VideoReaderOptions {
        VideoReaderOptions(size: .shorterSide(preprocessing.resizeShorterSide), threads: 2,
                           scaling: preprocessing.interpolation == .bicubic ? .bicubic : .bilinear)
    }
}
