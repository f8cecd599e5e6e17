import CFFmpeg

/// FFmpeg's own log lines (decoder complaints about a damaged file) would interleave with progress
/// output; the video reader reports every failure itself as a typed error, so FFmpeg prints only fatal
/// messages unless the command line asks for more (SLUICE_FFMPEG_LOG).
public enum FFmpegLog {
    public static let levels: [String: Int32] = [
        "quiet": AV_LOG_QUIET, "fatal": AV_LOG_FATAL, "error": AV_LOG_ERROR, "warning": AV_LOG_WARNING,
        "info": AV_LOG_INFO, "verbose": AV_LOG_VERBOSE, "debug": AV_LOG_DEBUG,
    ]

    nonisolated(unsafe) private static var chosen = false

    /// Sets FFmpeg's log level by name (nil or an unknown name: fatal only).
    public static func setLevel(named name: String?) {
        chosen = true
        av_log_set_level(name.flatMap { levels[$0.lowercased()] } ?? AV_LOG_FATAL)
    }

    /// Called by every reader and writer: FFmpeg prints fatal messages only, unless a level was chosen.
    static func quietUnlessChosen() { _ = quietByDefault }
    private static let quietByDefault: Void = { if !chosen { av_log_set_level(AV_LOG_FATAL) } }()
}
