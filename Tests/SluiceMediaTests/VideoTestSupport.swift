// Shared helpers for the video tests: the bundled edge-case clips, the shared media folder (../shared/media
// from the repo root, skipped when absent), videos.json, and clips generated with the ffmpeg CLI into a temporary folder.

import Foundation
import XCTest
@testable import SluiceMedia
import SluiceTestSupport

enum VideoMedia {
    static let root = TestResources.repository.deletingLastPathComponent().appendingPathComponent("shared/media")

    /// The shared media folder, or XCTSkip.
    static func folder() throws -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root.appendingPathComponent("video").path, isDirectory: &isDirectory),
              isDirectory.boolValue else {
            throw TestResources.missing("shared test media not found at \(root.path) (../shared/media from the repo root)")
        }
        return root
    }

    /// The small edge-case clips (rotated, corrupt, empty) live in the repository (Fixtures/video, with
    /// their provenance), so a fresh clone tests them; the rest come from the shared folder.
    static let bundled = TestResources.repository.appendingPathComponent("Tests/SluiceMediaTests/Fixtures")

    static func file(_ relative: String) throws -> String {
        let local = bundled.appendingPathComponent(relative)
        if FileManager.default.fileExists(atPath: local.path) { return local.path }
        return try folder().appendingPathComponent(relative).path
    }

    struct Entry: Decodable {
        let path: String
        let decoded_frames: String
        let decode_errors: String
        let rotation: String
        let avg_fps: String
        let nb_frames: String
        let w, h: IntOrString
    }

    enum IntOrString: Decodable {
        case int(Int), string(String)
        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let value = try? container.decode(Int.self) { self = .int(value) } else { self = .string(try container.decode(String.self)) }
        }
        var int: Int? { if case .int(let v) = self { return v }; return nil }
    }

    static func entries() throws -> [Entry] {
        let data = try Data(contentsOf: try folder().appendingPathComponent("videos.json"))
        return try JSONDecoder().decode([Entry].self, from: data)
    }
}

/// Runs a command line tool; returns stdout. Throws XCTSkip when the tool is missing.
@discardableResult
func runTool(_ tool: String, _ arguments: [String], allowFailure: Bool = false) throws -> Data {
    let candidates = ["/usr/bin/\(tool)", "/usr/local/bin/\(tool)"]
    guard let executable = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw TestResources.missing("\(tool) CLI not installed (scripts/setup installs ffmpeg)")
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Read both pipes fully before waiting (large outputs would otherwise block the child).
    var outData = Data(), errData = Data()
    let group = DispatchGroup()
    let errorHandle = errors.fileHandleForReading
    nonisolated(unsafe) var errBox = Data()
    group.enter()
    DispatchQueue.global().async {
        errBox = errorHandle.readDataToEndOfFile()
        group.leave()
    }
    outData = output.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    errData = errBox
    process.waitUntilExit()
    if process.terminationStatus != 0 && !allowFailure {
        let message = String(decoding: errData.suffix(2000), as: UTF8.self)
        throw NSError(domain: "runTool", code: Int(process.terminationStatus),
                      userInfo: [NSLocalizedDescriptionKey: "\(tool) \(arguments.joined(separator: " ")) failed: \(message)"])
    }
    return outData
}

/// A temporary folder for generated clips, removed by the returned cleanup.
func makeTemporaryFolder(_ label: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Generates a clip with the ffmpeg CLI from lavfi testsrc2: `arguments` go between input and output.
func generateClip(_ url: URL, seconds: Double, size: String = "160x96", rate: Int = 25, _ arguments: [String]) throws {
    try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                           "-i", "testsrc2=size=\(size):rate=\(rate):duration=\(seconds)"] + arguments + [url.path])
}

/// Raw RGB frames decoded by the ffmpeg CLI (autorotate on), split per frame.
func ffmpegFrames(_ path: String, width: Int, height: Int, extra: [String] = []) throws -> [[UInt8]] {
    let data = try runTool("ffmpeg", ["-nostdin", "-loglevel", "error", "-i", path] + extra
                           + ["-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
    let frameBytes = width * height * 3
    let bytes = [UInt8](data)
    return stride(from: 0, to: bytes.count - frameBytes + 1, by: frameBytes).map { Array(bytes[$0..<$0 + frameBytes]) }
}

func meanAbsoluteDifference(_ a: [UInt8], _ b: [UInt8]) -> Double {
    precondition(a.count == b.count)
    var total = 0
    for i in 0..<a.count { total += abs(Int(a[i]) - Int(b[i])) }
    return a.isEmpty ? 0 : Double(total) / Double(a.count)
}

/// Every frame of a file (all sampling), with the reader's final error.
func decodeAll(_ path: String, options: VideoReaderOptions = VideoReaderOptions(size: .none)) throws -> (frames: [VideoFrame], error: VideoError?) {
    let reader = try VideoReader(path: path, options: options)
    let frames = Array(reader.frames())
    return (frames, reader.finalError)
}

/// Writes a display matrix turning the frames `clockwise` degrees into the (single) track header of an MP4,
/// as phones do (FFmpeg 5.1's CLI cannot set one). Same values as the shared video_{0,90,180,270}.mov.
func setMP4Rotation(_ url: URL, clockwise: Int) throws {
    var bytes = [UInt8](try Data(contentsOf: url))
    let tag: [UInt8] = Array("tkhd".utf8)
    guard let at = (4..<(bytes.count - 4)).first(where: { Array(bytes[$0..<$0 + 4]) == tag }) else {
        throw NSError(domain: "setMP4Rotation", code: 1, userInfo: [NSLocalizedDescriptionKey: "no tkhd box"])
    }
    let version = bytes[at + 4]
    let matrixOffset = at - 4 + (version == 0 ? 48 : 60)
    let one: Int32 = 0x10000
    let matrix: [Int32]
    switch clockwise {
    case 90: matrix = [0, one, 0, -one, 0, 0, 0, 0, 0x4000_0000]
    case 180: matrix = [-one, 0, 0, 0, -one, 0, 0, 0, 0x4000_0000]
    case 270: matrix = [0, -one, 0, one, 0, 0, 0, 0, 0x4000_0000]
    default: matrix = [one, 0, 0, 0, one, 0, 0, 0, 0x4000_0000]
    }
    for (i, value) in matrix.enumerated() {
        let bits = UInt32(bitPattern: value)
        for j in 0..<4 { bytes[matrixOffset + i * 4 + j] = UInt8((bits >> (24 - 8 * UInt32(j))) & 0xFF) }
    }
    try Data(bytes).write(to: url)
}
