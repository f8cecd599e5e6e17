// Checkpoint reading of arbitrary bytes (torch zip and legacy pickle, safetensors, NPY/NPZ, told apart by
// their magic bytes): a state dict or an error, never a crash. The readers take a file, so each input is
// written to one scratch file per process.
import Foundation
import SluiceModels

let scratch = URL(fileURLWithPath: NSTemporaryDirectory())
    .appendingPathComponent("sluice-fuzz-checkpoint-\(ProcessInfo.processInfo.processIdentifier).bin")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard (try? Data(bytes: data, count: size).write(to: scratch)) != nil else { return 0 }
    _ = try? Checkpoint.load(scratch)
    return 0
}
