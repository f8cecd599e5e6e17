import Foundation
import SluicePipeline

/// What the job tests read back from a run.
enum JobsCLI {
    /// The records of a JSONL sink, in file order.
    static func records(_ path: URL) throws -> [ResultRecord] {
        try String(contentsOf: path, encoding: .utf8).split(separator: "\n").map {
            try JSONDecoder().decode(ResultRecord.self, from: Data($0.utf8))
        }
    }
}
