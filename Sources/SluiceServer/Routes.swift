import Foundation
import Hummingbird
import NIOCore
import SluiceJobs
import SluiceMedia
import SluiceModels
import SluicePipeline
import SluiceTensor

extension SluiceServer {
    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: RequestIDMiddleware())
        router.add(middleware: LogRequestsMiddleware(.info))
        router.add(middleware: MetricsMiddleware())

        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"],
                     body: .init(byteBuffer: ByteBuffer(string: WebPage.html)))
        }
        router.get("/healthz") { _, _ in JSON.response(["status": "ok"]) }
        router.get("/readyz") { [self] _, _ in try readiness() }

        let protected = router.group().add(middleware: AuthMiddleware(server: self))
        protected.get("/metrics") { [self] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: ByteBuffer(string: registry.emitToString())))
        }
        protected.get("/v1/models") { [self] _, _ in modelList() }
        protected.post("/v1/files") { [self] request, _ in
            let name = request.uri.queryParameters["name"].map(String.init) ?? "upload"
            let stored = try await uploads.receive(request.body, name: name)
            return JSON.response(stored, status: .created)
        }
        protected.post("/v1/jobs") { [self] request, _ in try await submitJob(request) }
        protected.get("/v1/jobs") { [self] _, _ in
            struct List: Encodable { var jobs: [JobView] }
            return JSON.response(List(jobs: try jobs.store.jobs().map(jobs.view)))
        }
        protected.get("/v1/jobs/:id") { [self] _, context in
            JSON.response(try jobs.view(try jobs.find(try context.parameters.require("id"))))
        }
        protected.delete("/v1/jobs/:id") { [self] _, context in
            JSON.response(try jobs.view(try jobs.cancel(try context.parameters.require("id"))), status: .accepted)
        }
        protected.get("/v1/jobs/:id/events") { [self] request, context in
            try events(for: try jobs.find(try context.parameters.require("id")), request: request)
        }
        protected.get("/v1/jobs/:id/results") { [self] request, context in
            try results(of: try jobs.find(try context.parameters.require("id")), csv: request.uri.queryParameters["format"] == "csv")
        }
        protected.get("/v1/jobs/:id/artifacts") { [self] _, context in
            try artefactList(of: try jobs.find(try context.parameters.require("id")))
        }
        protected.get("/v1/jobs/:id/artifacts/**") { [self] request, context in
            let job = try jobs.find(try context.parameters.require("id"))
            return try artefact(of: job, path: context.parameters.getCatchAll().joined(separator: "/"), request: request)
        }
        protected.post("/v1/classify") { [self] request, _ in try await classify(request) }
        protected.post("/v1/segment") { [self] request, _ in try await segment(request) }
        return router
    }

    // MARK: Service state

    func readiness() throws -> Response {
        struct Ready: Encodable { var ready: Bool; var models: [String]; var store: String; var missing: [String]? }
        let loaded = models.names
        let missing = configuration.models.filter { !loaded.contains($0) }
        var store = "ok"
        do { _ = try jobs.store.jobs().count } catch { store = "\(error)" }
        let ready = missing.isEmpty && store == "ok"
        return JSON.response(Ready(ready: ready, models: loaded, store: store, missing: missing.isEmpty ? nil : missing),
                             status: ready ? .ok : .serviceUnavailable)
    }

    func modelList() -> Response {
        struct Entry: Encodable {
            var name: String; var family: String; var task: String; var classes: Int; var labels: String
            var imported: Bool; var loaded: Bool
        }
        let loaded = Set(models.names)
        let entries = ModelRegistry.cards.map { card in
            Entry(name: card.name, family: card.family, task: card.task.rawValue, classes: card.labels.labels.count,
                  labels: card.labels.name,
                  imported: FileManager.default.fileExists(atPath: models.store.weightsURL(for: card.name).path),
                  loaded: loaded.contains(card.name))
        }
        struct List: Encodable { var models: [Entry] }
        return JSON.response(List(models: entries))
    }

    // MARK: Jobs

    func submitJob(_ request: Request) async throws -> Response {
        let contentType = request.headers[.contentType] ?? ""
        let text: String, base: URL
        var stored: [Uploads.Stored] = []
        if contentType.lowercased().hasPrefix("multipart/form-data") {
            guard let boundary = Uploads.disposition(contentType)["boundary"], !boundary.isEmpty else {
                throw APIError.badRequest("multipart/form-data without a boundary")
            }
            let form = try await uploads.receiveForm(request.body, boundary: boundary, maxText: configuration.maxBodyBytes)
            guard let pipeline = form.pipeline else { throw APIError.badRequest("the form has no 'pipeline' field") }
            text = pipeline
            // The pipeline names the uploaded files by their names: they are its folder.
            base = form.folder ?? configuration.data
            stored = form.stored
        } else {
            text = try await readText(request.body, limit: configuration.maxBodyBytes)
            base = configuration.data
        }
        let (job, created) = try await jobs.submit(text: text, base: base)
        struct Submitted: Encodable { var job: JobView; var created: Bool; var uploads: [Uploads.Stored]? }
        return JSON.response(Submitted(job: try jobs.view(job), created: created, uploads: stored.isEmpty ? nil : stored),
                             status: created ? .created : .ok, headers: [.location: "/v1/jobs/\(job.id)"])
    }

    func readText(_ body: RequestBody, limit: Int) async throws -> String {
        guard let text = String(validating: try await readBytes(body, limit: limit), as: UTF8.self) else {
            throw APIError.badRequest("the body is not UTF-8 text")
        }
        return text
    }

    func readBytes(_ body: RequestBody, limit: Int) async throws -> Data {
        var data = Data()
        for try await buffer in body {
            data.append(contentsOf: buffer.readableBytesView)
            if data.count > limit { throw APIError.tooLarge(limit) }
        }
        return data
    }

    /// Finished items in input order, a page at a time: JSON Lines (one record per line, as `sluice run`
    /// writes them) or CSV.
    func results(of job: Job, csv: Bool) throws -> Response {
        let store = jobs.store
        let definition = job.pipeline.flatMap { try? PipelineDefinition.parse($0, file: "pipeline", requiresSink: false) }
        let card = definition.flatMap { try? ModelRegistry.card(named: $0.model.name) }
        let topK = definition?.topK ?? 5
        let masks = card?.task.makesMasks ?? false, clips = card?.task == .videoClassification
        let body = ResponseBody { writer in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            final class Chunk { var data = Data() }
            let chunk = Chunk()
            let sink = CSVSink(topK: topK, masks: masks, clips: clips, output: { chunk.data.append($0) })
            var cursor = -1
            while true {
                let page = try store.finished(job: job.id, order: .input, after: cursor, limit: 256)
                guard let last = page.last else { break }
                cursor = last.position
                chunk.data.removeAll(keepingCapacity: true)
                for item in page {
                    for record in item.records {
                        if csv {
                            try sink.write(record)
                        } else {
                            chunk.data.append(try encoder.encode(record))
                            chunk.data.append(0x0a)
                        }
                    }
                }
                try await writer.write(ByteBuffer(bytes: chunk.data))
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: [.contentType: csv ? "text/csv; charset=utf-8" : "application/x-ndjson"], body: body)
    }

    func artefactList(of job: Job) throws -> Response {
        struct File: Encodable { var path: String; var bytes: Int }
        struct List: Encodable { var files: [File] }
        let folder = jobs.artefacts(of: job.id)
        var files: [File] = []
        if let walker = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: [.isRegularFileKey, .fileSizeKey]) {
            for case let url as URL in walker {
                let values = try? url.resourceValues(forKeys: [.isRegularFileKey, .fileSizeKey])
                guard values?.isRegularFile == true, !url.lastPathComponent.hasPrefix(".") else { continue }
                let relative = String(url.standardizedFileURL.path.dropFirst(folder.standardizedFileURL.path.count + 1))
                files.append(File(path: relative, bytes: values?.fileSize ?? 0))
            }
        }
        return JSON.response(List(files: files.sorted { $0.path < $1.path }))
    }

    /// One artefact file, with single byte ranges (a video element seeks with them).
    func artefact(of job: Job, path: String, request: Request) throws -> Response {
        let folder = jobs.artefacts(of: job.id)
        let components = path.split(separator: "/")
        guard !components.isEmpty, !components.contains(where: { $0 == ".." || $0.hasPrefix(".") }) else {
            throw APIError.forbidden("artefact paths name files inside the job's folder")
        }
        let url = folder.appendingPathComponent(path)
        guard let real = InputPolicy.realPath(url.path) else { throw APIError.notFound("no artefact '\(path)'") }
        guard let root = InputPolicy.realPath(folder.path), InputPolicy.isInside(real, root) else {
            throw APIError.forbidden("artefact paths name files inside the job's folder")
        }
        guard let handle = FileHandle(forReadingAtPath: real) else { throw APIError.notFound("no artefact '\(path)'") }
        let size = Int((try? FileManager.default.attributesOfItem(atPath: real)[.size] as? NSNumber)??.intValue ?? 0)
        let asked = request.headers[.range].flatMap { Self.byteRange($0, size: size) }
        let range = asked ?? 0..<size
        let status: HTTPResponse.Status = asked == nil ? .ok : .partialContent
        var headers: HTTPFields = [.contentType: Self.contentType(forExtension: url.pathExtension), .acceptRanges: "bytes"]
        if asked != nil { headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)" }
        headers[.contentLength] = String(range.count)
        let body = ResponseBody(contentLength: range.count) { writer in
            defer { try? handle.close() }
            try handle.seek(toOffset: UInt64(range.lowerBound))
            var left = range.count
            while left > 0 {
                let chunk = handle.readData(ofLength: min(left, 1 << 16))
                if chunk.isEmpty { break }
                left -= chunk.count
                try await writer.write(ByteBuffer(bytes: chunk))
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    static func byteRange(_ header: String, size: Int) -> Range<Int>? {
        guard header.hasPrefix("bytes="), !header.contains(","), size > 0 else { return nil }
        let parts = header.dropFirst(6).split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return nil }
        if parts[0].isEmpty, let suffix = Int(parts[1]), suffix > 0 { return max(0, size - suffix)..<size }
        guard let start = Int(parts[0]), start < size else { return nil }
        let end = parts[1].isEmpty ? size - 1 : min(Int(parts[1]) ?? size - 1, size - 1)
        return end >= start ? start..<(end + 1) : nil
    }

    static func contentType(forExtension ext: String) -> String {
        switch ext.lowercased() {
        case "png": "image/png"
        case "jpg", "jpeg": "image/jpeg"
        case "mp4": "video/mp4"
        case "jsonl": "application/x-ndjson"
        case "csv": "text/csv; charset=utf-8"
        case "json": "application/json"
        default: "application/octet-stream"
        }
    }

    // MARK: Interactive inference

    func model(named name: String) async throws -> (ModelCard, LoadedModel) {
        guard ModelRegistry.names.contains(name) else {
            throw APIError(status: .notFound, code: "unknown_model",
                           message: "unknown model '\(name)' (known: \(ModelRegistry.names.joined(separator: ", ")))")
        }
        do {
            return try await models.load(name)
        } catch {
            throw APIError(status: .unprocessableContent, code: "model_unavailable", message: "\(error)")
        }
    }

    /// The uploaded image's bytes, refused unless they are a JPEG or PNG (by content).
    func imageBody(_ request: Request) async throws -> Data {
        let data = try await readBytes(request.body, limit: configuration.maxUploadBytes)
        guard !data.isEmpty else { throw APIError.badRequest("the body is empty: send the image's bytes") }
        guard let format = ImageFormat.sniff(data), format.isDecodable else {
            throw APIError.unsupportedMedia("the body is not a JPEG or PNG image (judged by its content)")
        }
        return data
    }

    func decodeFailure(_ error: any Error) -> APIError {
        APIError(status: .unprocessableContent, code: "undecodable", message: "the image cannot be decoded: \(error)")
    }

    func classify(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        let name = query["model"].map(String.init) ?? configuration.models.first ?? "efficientnet_lite0"
        let topK = try Self.integer(query["top_k"], "top_k", default: 5, range: 1...1000)
        try admit()
        defer { leave() }
        let data = try await imageBody(request)
        let (card, loaded) = try await model(named: name)
        guard let classifier = loaded.classifier else {
            throw APIError.badRequest("\(name) does \(card.task.rawValue); /v1/classify takes image classifiers", code: "wrong_task")
        }
        let batcher = batcher(for: card, classifier)
        let image: RGBImage
        do { image = batcher.preparer.prepare(image: try batcher.preparer.decode(data: data, name: "body")) } catch { throw decodeFailure(error) }
        let logits = try await batcher.logits(for: image, timeout: configuration.requestTimeout)
        let mapper = OutputMapper(modelName: card.name, labels: card.labels, postprocessing: Postprocessing(topK: topK))
        struct Answer: Encodable { var model: String; var topK: [Prediction]
            enum CodingKeys: String, CodingKey { case model, topK = "top_k" } }
        return JSON.response(Answer(model: card.name,
                                    topK: mapper.predictions(fromLogits: Tensor(shape: [1, logits.count], data: logits))[0]))
    }

    func segment(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        guard let name = query["model"].map(String.init) else {
            throw APIError.badRequest("name the segmentation model: /v1/segment?model=NAME")
        }
        let format = query["format"].map(String.init) ?? "png"
        guard format == "png" || format == "json" else { throw APIError.badRequest("format must be png or json, got '\(format)'") }
        let rle = query["rle"].map { $0 != "false" && $0 != "0" } ?? true
        try admit()
        defer { leave() }
        let data = try await imageBody(request)
        let (card, loaded) = try await model(named: name)
        guard case .segmenter(let segmenter) = loaded else {
            throw APIError.badRequest("\(name) does \(card.task.rawValue); /v1/segment takes segmentation models", code: "wrong_task")
        }
        let preparer = FramePreparer(card.input.image)
        let source: RGBImage
        do { source = try preparer.decode(data: data, name: "body") } catch { throw decodeFailure(error) }
        let prepared = preparer.prepare(image: source)
        let input = Tensor(uninitialized: [1, prepared.height, prepared.width, 3]) { preparer.normalize(prepared, into: $0) }
        let waiter = Waiter<ClassMap>()
        lane.enqueue {
            guard !waiter.isFinished else { return }
            let logits = segmenter.segment(input).splitBatch()[0]
            waiter.finish(.success(ClassMap(argmaxOf: logits, width: source.width, height: source.height)))
        }
        let map = try await waiter.wait(timeout: configuration.requestTimeout)
        if format == "json" {
            let mapper = OutputMapper(modelName: card.name, labels: card.labels, postprocessing: Postprocessing(topK: 5, rle: rle))
            struct Answer: Encodable { var model: String; var mask: MaskSummary }
            return JSON.response(Answer(model: card.name, mask: mapper.summary(of: map)))
        }
        let temporary = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-mask-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: temporary) }
        try PNGEncoding.writeIndexed(path: temporary.path, width: map.width, height: map.height, indices: map.classes,
                                     palette: card.labels.palette ?? Palette.voc)
        return Response(status: .ok, headers: [.contentType: "image/png"],
                        body: .init(byteBuffer: ByteBuffer(bytes: try Data(contentsOf: temporary))))
    }

    static func integer(_ value: Substring?, _ name: String, default fallback: Int, range: ClosedRange<Int>) throws -> Int {
        guard let value else { return fallback }
        guard let number = Int(value), range.contains(number) else {
            throw APIError.badRequest("\(name) must be an integer in \(range.lowerBound)...\(range.upperBound), got '\(value)'")
        }
        return number
    }
}
