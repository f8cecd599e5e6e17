import Foundation

/// JSON written by hand where the byte layout matters (safetensors headers, `sluice probe` lines).
public enum JSONText {
    /// A JSON string literal: quotes, backslashes and control characters escaped; other text as UTF-8
    /// (JSONEncoder would also escape "/").
    public static func quoted(_ text: String) -> String {
        var escaped = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": escaped += "\\\""
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x20: escaped += String(format: "\\u%04x", scalar.value)
            default: escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped + "\""
    }
}
