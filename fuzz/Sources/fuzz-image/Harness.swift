// JPEG (with EXIF orientation) and PNG decoding of arbitrary bytes: an image or an ImageError, never a
// crash. The pixel limit is lowered so that libFuzzer's memory limit measures leaks, not legal images.
import Foundation
import SluiceMedia

let decoder = ImageDecoder(maxPixels: 1 << 22)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? decoder.decode(UnsafeRawBufferPointer(start: data, count: size), name: "fuzz")
    return 0
}
