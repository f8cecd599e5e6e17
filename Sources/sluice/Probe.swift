import ArgumentParser
import Foundation
import SluiceMedia

struct Probe: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe video files as JSON, one object per line (container, codec, size, rotation, fps, duration).",
        discussion: """
            With --decode every frame is decoded and the object also gives decoded_frames, first_pts, last_pts and \
            decode_errors. A file that cannot be read gets an object with its "error"; the exit code is non-zero \
            only when no file could be probed.
            """)

    @Argument(help: "Video files or URLs.") var files: [String]
    @Flag(help: "Decode every frame and report the count, first/last PTS and decode errors.") var decode = false
    @Option(help: "With --decode, also convert each frame to WxH RGB24 (e.g. 224x224; 'native' for the stream size).")
    var size: String?
    @Option(help: "Decoder threads.") var threads = 2
    @Option(help: ArgumentHelp("With --decode, hand out one frame per 1/FPS s (nearest PTS) and report sampled_frames.",
                               visibility: .hidden))
    var fps: Double?

    func validate() throws {
        _ = try outputSize()
        guard threads >= 1 else { throw CommandError("--threads must be at least 1") }
        if let fps, !(fps > 0) { throw CommandError("--fps must be positive") }
    }

    /// The --size option as a conversion target.
    func outputSize() throws(CommandError) -> VideoOutputSize {
        guard let size else { return .none }
        if size == "native" { return .native }
        let parts = size.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 2, parts[0] > 0, parts[1] > 0 else {
            throw CommandError("--size wants WxH, e.g. 224x224, got \(size)")
        }
        return .size(width: parts[0], height: parts[1])
    }

    func run() throws {
        let outputSize = try outputSize()
        var probed = 0
        for file in files {
            let report = VideoProbe.probe(file, decode: decode, size: outputSize, threads: threads, sampleFPS: fps)
            if report.succeeded { probed += 1 }
            FileHandle.standardOutput.write(Data((report.json + "\n").utf8))
        }
        if probed == 0 { throw ExitCode(1) }
    }
}
