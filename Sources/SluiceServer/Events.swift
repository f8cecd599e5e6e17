import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import SluiceJobs
import SluiceModels
import SluicePipeline

extension SluiceServer {
    /// `GET /v1/jobs/{id}/events`: Server-Sent Events read from the job store, so nothing is lost
    /// between connections. `item` events carry the finished item (its records or error, and its
    /// artefacts) with the item's finish sequence number as the event id; `progress` events the counts
    /// when they change; `end` the job's final view, after which the stream closes. A client that
    /// reconnects with `Last-Event-ID: N` gets the items finished after the N-th and nothing twice.
    func events(for job: Job, request: Request) throws -> Response {
        let lastID = request.headers[HTTPField.Name("Last-Event-ID")!] ?? request.uri.queryParameters["after"].map(String.init)
        var start = 0
        if let lastID {
            guard let parsed = Int(lastID), parsed >= 0 else {
                throw APIError.badRequest("Last-Event-ID must be the id of an event of this stream (a count), got '\(lastID)'")
            }
            start = parsed
        }
        let artefacts = ArtefactNames(job: job, folder: jobs.artefacts(of: job.id))
        let body = ResponseBody { [self, start] writer in
            var cursor = start
            try await writer.write(ByteBuffer(string: "retry: 1000\n\n"))
            var lastProgress = ""
            var lastWrite = Date()
            while !streams.isStopped {
                let page = try jobs.store.finished(job: job.id, order: .finish, after: cursor, limit: 64)
                var text = ""
                for item in page {
                    cursor = item.sequence
                    text += Self.event("item", id: item.sequence, ItemEvent(item, artefacts: artefacts.names(for: item)))
                }
                let view = try jobs.view(try jobs.find(job.id))
                let progress = String(decoding: JSON.data(view), as: UTF8.self)
                if progress != lastProgress || !page.isEmpty {
                    lastProgress = progress
                    text += "event: progress\ndata: \(progress)\n\n"
                }
                let ended = page.count < 64 && ["done", "cancelled", "blocked"].contains(view.state)
                if ended { text += "event: end\ndata: \(progress)\n\n" }
                if !text.isEmpty || Date().timeIntervalSince(lastWrite) > 15 {
                    // A comment keeps idle connections (and proxies) from timing out.
                    try await writer.write(ByteBuffer(string: text.isEmpty ? ": keep-alive\n\n" : text))
                    lastWrite = Date()
                }
                if ended { break }
                if page.count < 64 { try await Task.sleep(for: .milliseconds(250)) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    static func event(_ name: String, id: Int, _ value: some Encodable) -> String {
        "event: \(name)\nid: \(id)\ndata: \(String(decoding: JSON.data(value), as: UTF8.self))\n\n"
    }
}

struct ItemEvent: Encodable {
    var sequence: Int
    var position: Int
    var source: String
    var error: String?
    var records: [ResultRecord]
    var artifacts: [String]

    init(_ item: FinishedItem, artefacts: [String]) {
        sequence = item.sequence; position = item.position; source = item.source; error = item.error
        records = item.records; artifacts = artefacts
    }
}

/// The artefact files of a finished item, relative to the job's artefacts URL: its overlay (a PNG per
/// image, a video per video) and its masks.
struct ArtefactNames: Sendable {
    let folder: URL
    let overlays: Bool
    let video: Bool

    init(job: Job, folder: URL) {
        self.folder = folder
        let definition = job.pipeline.flatMap { try? PipelineDefinition.parse($0, file: "pipeline", requiresSink: false) }
        overlays = definition?.overlay != nil
        video = definition.map { if case .video = $0.source.media { true } else { false } } ?? false
    }

    func names(for item: FinishedItem) -> [String] {
        var names: [String] = []
        if overlays {
            let overlayFolder = folder.appendingPathComponent("overlays").path
            let path = video ? OverlaySink.path(for: item.source, in: overlayFolder) : OverlaySink.imagePath(for: item.source, in: overlayFolder)
            if FileManager.default.fileExists(atPath: path) { names.append(relative(path)) }
        }
        for record in item.records {
            if let file = record.mask?.file, file.hasPrefix(folder.path + "/") { names.append(relative(file)) }
        }
        return names
    }

    private func relative(_ path: String) -> String { String(path.dropFirst(folder.path.count + 1)) }
}
