import Foundation
import SluiceMedia

/// Overlay videos: each sampled frame of a video, at its own size and timestamp, with its top-1 label
/// and probability drawn on it, as an H.264/yuv420p `+faststart` MP4 that plays in browsers.
///
/// Written from an item's finished records (a second pass over the video), to a temporary name and then
/// renamed, so a killed run never leaves half a file and a resumed one writes only the missing overlays.
public enum OverlaySink {
    /// `FOLDER/NAME.overlay.mp4` for a video `…/NAME.EXT`.
    public static func path(for source: String, in folder: String) -> String {
        let name = ((source as NSString).lastPathComponent as NSString).deletingPathExtension
        return (folder as NSString).appendingPathComponent(name + ".overlay.mp4")
    }

    /// Writes the overlay of one video unless one written after `since` (the job's start) is there;
    /// `records` are the video's records in frame order, as the sampling policy gave them.
    public static func writeVideo(source: String, records: [ResultRecord], sampling: VideoSampling,
                                  folder: String, since: Date) throws {
        let target = path(for: source, in: folder)
        let frames = records.filter { $0.frameIndex != nil }
        guard !frames.isEmpty else { return }
        if let written = (try? FileManager.default.attributesOfItem(atPath: target))?[.modificationDate] as? Date,
           written >= since {
            return
        }
        if FileManager.default.fileExists(atPath: target) { try FileManager.default.removeItem(atPath: target) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let temporary = (target as NSString).deletingPathExtension + ".partial.mp4"
        let reader = try VideoReader(path: source)
        var writer: VideoWriter?
        var lastPTS = -Double.infinity
        var next = frames.makeIterator()
        for var frame in reader.frames(sampling) {
            guard let record = next.next() else { break }
            // A frame nearest to several ticks comes once per tick; a video shows it once.
            guard record.frameIndex == frame.index, frame.pts > lastPTS else { continue }
            if writer == nil {
                writer = try VideoWriter(path: temporary, width: frame.image.width, height: frame.image.height)
            }
            let scale = max(1, min(frame.image.width, frame.image.height) / 180)
            if let best = record.topK?.first {
                frame.image.drawLabel(String(format: "%@ %.0f%%", best.label, 100 * best.score), x: 0, y: 0, scale: scale)
            }
            try writer!.append(frame.image, pts: frame.pts)
            lastPTS = frame.pts
        }
        guard let writer else { return }
        try writer.finish()
        try FileManager.default.moveItem(atPath: temporary, toPath: target)
    }
}
