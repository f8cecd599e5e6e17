// Pipeline YAML loading and validation of arbitrary text: a pipeline or positioned problems, never a
// crash or a hang.
import Foundation
import SluicePipeline

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    _ = try? PipelineDefinition.parse(text, file: "fuzz.yaml", baseDirectory: URL(fileURLWithPath: "/data"))
    return 0
}
