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
            .centerCrop(preprocessing.cropSize)
        image.writeNormalized(into: UnsafeMutableBufferPointer(start: slot, count: image.pixels.count), normalization)
    }
}
