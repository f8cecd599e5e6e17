// Video probing and decoding of arbitrary bytes through Sluice's reader (FFmpeg's demuxers and decoders,
// Sluice's timestamps, sampling and RGB conversion): frames and at most a typed error, never a crash, a
// hang or a leak. Each input is written to one scratch file per process; frames are small and few, and
// the pixel limit is lowered, so that libFuzzer's memory and time limits measure defects, not legal video.
import Foundation
import SluiceMedia

let scratch = URL(fileURLWithPath: NSTemporaryDirectory())
    .appendingPathComponent("sluice-fuzz-video-\(ProcessInfo.processInfo.processIdentifier).bin")
let options = VideoReaderOptions(size: .size(width: 24, height: 16), threads: 1, readTimeout: 5, maxPixels: 1 << 20)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard (try? Data(bytes: data, count: size).write(to: scratch)) != nil else { return 0 }
    guard let reader = try? VideoReader(path: scratch.path, options: options) else { return 0 }
    var frames = 0
    for frame in reader.frames() {
        precondition(frame.image.width == 24 && frame.image.height == 16 && frame.pts.isFinite, "bad frame \(frame.index)")
        frames += 1
        if frames == 24 { break }
    }
    _ = reader.finalError.map { "\($0)" }
    return 0
}
