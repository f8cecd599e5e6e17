// `sluice probe`: one JSON object per file describing its video stream, optionally after decoding every frame.

import Foundation
import SluiceTensor

public enum VideoProbe {
    /// What probing one file found.
    public struct Report: Sendable {
        public var file: String
        public var info: VideoInfo?
        public var decodedFrames: Int?
        /// Frames handed out by `fps` sampling (with `sampleFPS`).
        public var sampledFrames: Int?
        public var firstPTS: Double?
        public var lastPTS: Double?
        /// Errors met while decoding (the reader went on past recoverable ones).
        public var decodeErrors: [String] = []
        /// Why the file could not be probed at all.
        public var error: VideoError?
        /// Wall seconds spent decoding (with `decode`).
        public var decodeSeconds: Double?

        public var succeeded: Bool { error == nil }

        /// One line of JSON, keys in a fixed order.
        public var json: String {
            var fields: [(String, String)] = [("file", JSONText.quoted(file))]
            if let info {
                fields += [
                    ("container", JSONText.quoted(info.container)),
                    ("codec", JSONText.quoted(info.codec)),
                    ("pixel_format", JSONText.quoted(info.pixelFormat)),
                    ("width", String(info.width)),
                    ("height", String(info.height)),
                    ("rotation", String(info.rotation)),
                    ("fps", jsonNumber(info.fps)),
                    ("duration", jsonNumber(info.duration)),
                    ("frames", info.frameCount.map(String.init) ?? "null"),
                    ("audio", "[" + info.audioStreams.map {
                        "{\"codec\": \(JSONText.quoted($0.codec)), \"sample_rate\": \($0.sampleRate), \"channels\": \($0.channels)}"
                    }.joined(separator: ", ") + "]"),
                ]
            }
            if let decodedFrames {
                fields += [
                    ("decoded_frames", String(decodedFrames)),
                ]
                if let sampledFrames { fields.append(("sampled_frames", String(sampledFrames))) }
                fields += [
                    ("first_pts", jsonNumber(firstPTS)),
                    ("last_pts", jsonNumber(lastPTS)),
                    ("decode_errors", "[" + decodeErrors.map(JSONText.quoted).joined(separator: ", ") + "]"),
                ]
                if let decodeSeconds { fields.append(("decode_seconds", jsonNumber(decodeSeconds))) }
            }
            fields.append(("error", error.map { JSONText.quoted($0.description) } ?? "null"))
            return "{" + fields.map { "\(JSONText.quoted($0.0)): \($0.1)" }.joined(separator: ", ") + "}"
        }
    }

    /// Opens `path`, reads its headers and, with `decode`, decodes every frame (converted to `size`, or not
    /// converted at all with `.none`). With `sampleFPS`, frames are handed out by `.fps` sampling (all are
    /// still decoded; only the chosen ones are converted).
    public static func probe(_ path: String, decode: Bool = false, size: VideoOutputSize = .none,
                             threads: Int = 2, scaling: VideoScaling = .bicubic, sampleFPS: Double? = nil) -> Report {
        var report = Report(file: path)
        let reader: VideoReader
        do {
            reader = try VideoReader(path: path, options: VideoReaderOptions(size: size, threads: threads, scaling: scaling))
        } catch {
            report.error = error
            return report
        }
        report.info = reader.info
        guard decode else { return report }
        let start = DispatchTime.now().uptimeNanoseconds
        var count = 0
        var first: Double?, last: Double?
        for frame in reader.frames(sampleFPS.map { .fps($0) } ?? .all) {
            count += 1
            if first == nil { first = frame.pts }
            last = frame.pts
        }
        report.decodeSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        report.decodedFrames = sampleFPS == nil ? count : reader.decodedFrameCount
        if sampleFPS != nil { report.sampledFrames = count }
        report.firstPTS = first
        report.lastPTS = last
        if let error = reader.finalError { report.decodeErrors.append(error.description) }
        return report
    }
}

func jsonNumber(_ value: Double?) -> String {
    guard let value, value.isFinite else { return "null" }
    if value == value.rounded(), abs(value) < 1e15 { return String(format: "%.1f", value) }
    return String(format: "%.6g", value) == "\(value)" ? "\(value)" : String(format: "%.9g", value)
}
