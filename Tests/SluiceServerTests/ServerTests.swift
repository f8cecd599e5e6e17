import AsyncHTTPClient
import Foundation
import NIOCore
import XCTest
import SluiceMedia
import SluiceModels
import SluiceServer
import SluiceTestSupport

/// The HTTP API against a real server on a loopback port: every route, and the bad cases.
final class ServerTests: XCTestCase {
    func testHealthReadinessAndModels() async throws {
        let server = try await TestServer.shared()
        let health = try await server.request(.GET, "/healthz", token: nil)
        XCTAssertEqual(health.status, 200)
        XCTAssertNotNil(health.headers.first(name: "X-Request-Id"), "every response names its request")
        let ready = try await server.request(.GET, "/readyz", token: nil)
        XCTAssertEqual(ready.status, 200)
        XCTAssertEqual(ready.json["models"] as? [String], ["efficientnet_lite0"])
        let models = try await server.request(.GET, "/v1/models")
        let entries = models.json["models"] as? [[String: Any]] ?? []
        let lite0 = entries.first { $0["name"] as? String == "efficientnet_lite0" }
        XCTAssertEqual(lite0?["imported"] as? Bool, true)
        XCTAssertEqual(lite0?["loaded"] as? Bool, true)
        XCTAssertEqual(entries.first { $0["name"] as? String == "trecvit_b" }?["imported"] as? Bool, false)
    }

    func testTokens() async throws {
        let server = try await TestServer.shared()
        let none = try await server.request(.GET, "/v1/jobs", token: nil)
        XCTAssertEqual(none.status, 401)
        XCTAssertEqual(none.headers.first(name: "WWW-Authenticate"), #"Bearer realm="sluice""#)
        XCTAssertTrue(none.errorMessage.contains("needs a bearer token"), none.errorMessage)
        let wrong = try await server.request(.GET, "/v1/jobs", token: "s3cret-tokem")
        XCTAssertEqual(wrong.status, 401)
        XCTAssertTrue(wrong.errorMessage.contains("not one this server accepts"), wrong.errorMessage)
        let reply1 = try await server.request(.GET, "/metrics", token: nil, checkSchema: false)
        XCTAssertEqual(reply1.status, 401)
        let reply2 = try await server.request(.POST, "/v1/classify", body: Data([1]), token: nil)
        XCTAssertEqual(reply2.status, 401)
        // Browsers' EventSource and media elements pass the token in the query, for GET only.
        let reply3 = try await server.request(.GET, "/v1/jobs?access_token=\(TestServer.token)", token: nil)
        XCTAssertEqual(reply3.status, 200)
        let reply4 = try await server.request(.GET, "/v1/jobs?access_token=nope", token: nil)
        XCTAssertEqual(reply4.status, 401)
        let reply5 = try await server.request(.GET, "/healthz", token: "nope")
        XCTAssertEqual(reply5.status, 200, "health needs no token")
    }

    func testClassifyMatchesAJobOnTheSameImage() async throws {
        let server = try await TestServer.shared()
        let chelsea = server.root.appendingPathComponent("photos/chelsea.png")
        let reply = try await server.request(.POST, "/v1/classify?top_k=3", body: try Data(contentsOf: chelsea), contentType: "image/png")
        XCTAssertEqual(reply.status, 200, reply.text)
        let top = reply.json["top_k"] as? [[String: Any]] ?? []
        XCTAssertEqual(top.count, 3)
        // The same image through a job (decoder, preparer, batch of one) gives the same classes and scores.
        let submitted = try await server.submit("name: one\nsource: { images: \(chelsea.path) }\nstages:\n  - model: efficientnet_lite0\n  - topk: 3\n")
        let id = try XCTUnwrap((submitted.json["job"] as? [String: Any])?["id"] as? String)
        _ = try await server.waitForJob(id)
        let results = try await server.request(.GET, "/v1/jobs/\(id)/results")
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(results.text.split(separator: "\n")[0].utf8)) as? [String: Any])
        let fromJob = record["top_k"] as? [[String: Any]] ?? []
        XCTAssertEqual(top.map { $0["index"] as? Int }, fromJob.map { $0["index"] as? Int })
        for (a, b) in zip(top, fromJob) {
            XCTAssertEqual((a["score"] as? Double) ?? -1, (b["score"] as? Double) ?? 1, accuracy: 1e-5)
        }
        XCTAssertTrue((top.first?["label"] as? String ?? "").contains("cat"), "chelsea is a cat: \(top)")
    }

    func testClassifyRefusesBadInput() async throws {
        let server = try await TestServer.shared()
        let empty = try await server.request(.POST, "/v1/classify", body: Data())
        XCTAssertEqual(empty.status, 400)
        let text = try await server.request(.POST, "/v1/classify", body: Data("hello, not an image".utf8), contentType: "image/jpeg")
        XCTAssertEqual(text.status, 415, "judged by content, not by the declared type")
        let jpeg = try Data(contentsOf: server.root.appendingPathComponent("photos/grace_hopper.jpg"))
        let truncated = try await server.request(.POST, "/v1/classify", body: jpeg.prefix(400))
        XCTAssertEqual(truncated.status, 422, truncated.text)
        XCTAssertTrue(truncated.errorMessage.hasPrefix("the image cannot be decoded"), truncated.errorMessage)
        let unknown = try await server.request(.POST, "/v1/classify?model=resnet50", body: jpeg)
        XCTAssertEqual(unknown.status, 404)
        XCTAssertTrue(unknown.errorMessage.contains("unknown model 'resnet50'"), unknown.errorMessage)
        let missing = try await server.request(.POST, "/v1/classify?model=hornet_tiny_7x7", body: jpeg)
        XCTAssertEqual(missing.status, 422, "a registered model without imported weights")
        let badK = try await server.request(.POST, "/v1/classify?top_k=0", body: jpeg)
        XCTAssertEqual(badK.status, 400)
        let big = try await server.request(.POST, "/v1/classify", body: Data(repeating: 0xff, count: 3 << 20))
        XCTAssertEqual(big.status, 413)
        let wrongTask = try await server.request(.POST, "/v1/segment?model=efficientnet_lite0&format=json", body: jpeg)
        XCTAssertEqual(wrongTask.status, 400)
        XCTAssertFalse(wrongTask.text.contains("Swift"), "no internals in errors")
    }

    func testJobLifecycleResultsAndEvents() async throws {
        let server = try await TestServer.shared()
        let pipeline = """
            name: photos
            source: { images: [\(server.root.path)/photos, \(server.root.path)/more] }
            stages:
              - model: efficientnet_lite0
                batch: 2
              - topk: 2
            sink: { jsonl: photos.jsonl, csv: photos.csv }

            """
        let first = try await server.submit(pipeline)
        XCTAssertEqual(first.status, 201, first.text)
        let job = try XCTUnwrap(first.json["job"] as? [String: Any])
        let id = try XCTUnwrap(job["id"] as? String)
        XCTAssertEqual(job["total"] as? Int, 5, "photos (3) and more with its nested folder (2)")
        XCTAssertEqual(first.headers.first(name: "Location"), "/v1/jobs/\(id)")
        let again = try await server.submit(pipeline)
        XCTAssertEqual(again.status, 200, "the same pipeline and inputs are the same job")
        XCTAssertEqual((again.json["job"] as? [String: Any])?["id"] as? String, id)

        let finished = try await server.waitForJob(id)
        XCTAssertEqual(finished["state"] as? String, "done")
        XCTAssertEqual(finished["done"] as? Int, 5)

        let listed = try await server.request(.GET, "/v1/jobs")
        XCTAssertTrue((listed.json["jobs"] as? [[String: Any]] ?? []).contains { $0["id"] as? String == id })
        let prefix = try await server.request(.GET, "/v1/jobs/\(id.prefix(10))")
        XCTAssertEqual(prefix.json["id"] as? String, id, "a unique prefix names the job")
        let reply6 = try await server.request(.GET, "/v1/jobs/ffffffffffff")
        XCTAssertEqual(reply6.status, 404)

        let results = try await server.request(.GET, "/v1/jobs/\(id)/results")
        XCTAssertEqual(results.headers.first(name: "Content-Type"), "application/x-ndjson")
        let sources = results.text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["source"] as? String
        }
        XCTAssertEqual(Array(sources.prefix(3)).map { ($0 as NSString).lastPathComponent },
                       ["astronaut.png", "chelsea.png", "grace_hopper.jpg"], "input order")
        XCTAssertEqual(Set(sources.map { ($0 as NSString).lastPathComponent }),
                       ["orange.jpg", "squirrel_cls.jpg", "astronaut.png", "chelsea.png", "grace_hopper.jpg"])
        let csv = try await server.request(.GET, "/v1/jobs/\(id)/results?format=csv")
        let rows = csv.text.split(separator: "\n")
        XCTAssertEqual(rows.count, 6, "a header and one row per image")
        XCTAssertTrue(rows[0].hasPrefix("source,frame_index,pts,model,error,index_1,label_1,score_1,index_2"))

        // The sink files named by the pipeline are the job's artefacts.
        let artefacts = try await server.request(.GET, "/v1/jobs/\(id)/artifacts")
        let files = (artefacts.json["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        XCTAssertEqual(files, ["photos.csv", "photos.jsonl"])
        let exported = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/photos.jsonl", checkSchema: false)
        XCTAssertEqual(exported.text, results.text, "the exported file holds what /results streams")

        // Events replay every item once, in finish order, then the end.
        let all = try await server.events(id)
        let items = all.filter { $0.name == "item" }
        XCTAssertEqual(items.map(\.id), ["1", "2", "3", "4", "5"])
        XCTAssertEqual(Set(items.compactMap { $0.data["position"] as? Int }), [0, 1, 2, 3, 4])
        XCTAssertEqual(all.last?.name, "end")
        XCTAssertEqual(all.last?.data["state"] as? String, "done")
        // A client that dropped the connection after the second item resumes with the rest, nothing twice.
        let firstPart = try await server.events(id, stopAfterItems: 2).filter { $0.name == "item" }
        XCTAssertEqual(firstPart.map(\.id), ["1", "2"])
        let rest = try await server.events(id, lastEventID: firstPart.last!.id).filter { $0.name == "item" }
        XCTAssertEqual(rest.map(\.id), ["3", "4", "5"])
        let reply7 = try await server.request(.GET, "/v1/jobs/\(id)/events", headers: [("Last-Event-ID", "x")])
        XCTAssertEqual(reply7.status, 400)
    }

    func testPipelineErrorsComeBackWithTheirPlace() async throws {
        let server = try await TestServer.shared()
        let malformed = try await server.submit("name: bad\nsource: { images: [a, b }\n")
        XCTAssertEqual(malformed.status, 400)
        XCTAssertTrue(malformed.errorMessage.hasPrefix("pipeline:2:"), "file:line:col, got: \(malformed.errorMessage)")
        let issue = ((malformed.json["error"] as? [String: Any])?["issues"] as? [[String: Any]])?.first
        XCTAssertEqual(issue?["line"] as? Int, 2)

        let unknownModel = try await server.submit("source: { images: \(server.root.path)/photos }\nstages:\n  - model: resnet50\n")
        XCTAssertEqual(unknownModel.status, 400)
        XCTAssertTrue(unknownModel.errorMessage.hasPrefix("pipeline:3:12: unknown model 'resnet50'"), unknownModel.errorMessage)

        let stages = "stages:\n  - model: efficientnet_lite0\n"
        // Relative paths start at the data folder; '..' out of the roots is refused.
        let traversal = try await server.submit("source: { images: ../root/../outside }\n" + stages)
        XCTAssertEqual(traversal.status, 403, traversal.text)
        XCTAssertTrue(traversal.errorMessage.contains("not under an input root"), traversal.errorMessage)
        let absolute = try await server.submit("source: { images: /etc }\n" + stages)
        XCTAssertEqual(absolute.status, 403)
        let dotdot = try await server.submit("source: { images: \(server.root.path)/photos/../../outside }\n" + stages)
        XCTAssertEqual(dotdot.status, 403)
        // A symbolic link inside a root that leads outside it: a folder, a file, or one met while listing.
        let linkedFolder = try await server.submit("source: { images: \(server.root.path)/escape }\n" + stages)
        XCTAssertEqual(linkedFolder.status, 403)
        XCTAssertTrue(linkedFolder.errorMessage.contains("leads to"), linkedFolder.errorMessage)
        let linkedFile = try await server.submit("source: { images: \(server.root.path)/link.png }\n" + stages)
        XCTAssertEqual(linkedFile.status, 403)
        let wholeRoot = try await server.submit("source: { images: \(server.root.path) }\n" + stages)
        XCTAssertEqual(wholeRoot.status, 403, "the root's listing meets link.png and escape/secret.png")
        let weights = try await server.submit("source: { images: \(server.root.path)/photos }\nstages:\n  - model: efficientnet_lite0\n    weights: /etc/passwd\n")
        XCTAssertEqual(weights.status, 403, "weights are inputs too")
        let missingFile = try await server.submit("source: { images: \(server.root.path)/photos/nope.jpg }\n" + stages)
        XCTAssertEqual(missingFile.status, 404)
        let huge = try await server.submit("name: " + String(repeating: "x", count: 70_000) + "\n")
        XCTAssertEqual(huge.status, 413)
    }

    func testUploadsAndMultipartJobs() async throws {
        let server = try await TestServer.shared()
        let chelsea = try Data(contentsOf: server.root.appendingPathComponent("photos/chelsea.png"))
        let upload = try await server.request(.POST, "/v1/files?name=../../My%20Cat.png", body: chelsea)
        XCTAssertEqual(upload.status, 201, upload.text)
        let path = try XCTUnwrap(upload.json["path"] as? String)
        XCTAssertTrue(path.hasPrefix("uploads/") && path.hasSuffix("/My_Cat.png"), "a safe name inside uploads: \(path)")
        XCTAssertEqual(upload.json["kind"] as? String, "png")
        XCTAssertEqual(upload.json["bytes"] as? Int, chelsea.count)
        let disguised = try await server.request(.POST, "/v1/files?name=cat.jpg", body: Data("#!/bin/sh\necho hi\n".utf8))
        XCTAssertEqual(disguised.status, 415, "the content decides, not the name")
        let tooBig = try await server.request(.POST, "/v1/files?name=big.png", body: chelsea + Data(count: 2 << 20))
        XCTAssertEqual(tooBig.status, 413)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: server.data.appendingPathComponent("uploads").path)
        XCTAssertFalse(leftovers.contains { $0.hasPrefix(".incoming") }, "refused uploads leave nothing behind")

        // A job over the uploaded file, named relative to the data folder.
        let byPath = try await server.submit("name: uploaded\nsource: { images: \(path) }\nstages:\n  - model: efficientnet_lite0\n")
        XCTAssertEqual(byPath.status, 201, byPath.text)

        // Files and pipeline in one multipart request: the pipeline names the files relative to their folder.
        let boundary = "sluice-test-boundary"
        var form = Data()
        func part(_ headers: String, _ body: Data) {
            form += Data("--\(boundary)\r\n\(headers)\r\n\r\n".utf8) + body + Data("\r\n".utf8)
        }
        // Sent as a file, as `curl -F pipeline=@p.yaml` does: still the pipeline.
        part(#"Content-Disposition: form-data; name="pipeline"; filename="p.yaml""#,
             Data("name: form\nsource: { images: . }\nstages:\n  - model: efficientnet_lite0\n  - topk: 1\nsink: { overlays: overlays }\n".utf8))
        part("Content-Disposition: form-data; name=\"files\"; filename=\"chelsea.png\"\r\nContent-Type: image/png", chelsea)
        part("Content-Disposition: form-data; name=\"files\"; filename=\"hopper.jpg\"\r\nContent-Type: image/jpeg",
             try Data(contentsOf: server.root.appendingPathComponent("photos/grace_hopper.jpg")))
        form += Data("--\(boundary)--\r\n".utf8)
        let multipart = try await server.request(.POST, "/v1/jobs", body: form, contentType: "multipart/form-data; boundary=\(boundary)")
        XCTAssertEqual(multipart.status, 201, multipart.text)
        XCTAssertEqual((multipart.json["uploads"] as? [[String: Any]])?.count, 2)
        let id = try XCTUnwrap((multipart.json["job"] as? [String: Any])?["id"] as? String)
        XCTAssertEqual((multipart.json["job"] as? [String: Any])?["total"] as? Int, 2)
        _ = try await server.waitForJob(id)
        // Overlays are artefacts, named in each item's event and served with byte ranges.
        let items = try await server.events(id).filter { $0.name == "item" }
        let overlays = items.flatMap { $0.data["artifacts"] as? [String] ?? [] }
        XCTAssertEqual(overlays.count, 2, "\(items.map(\.data))")
        let overlay = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/\(overlays[0])")
        XCTAssertEqual(overlay.status, 200)
        XCTAssertEqual(overlay.headers.first(name: "Content-Type"), "image/png")
        XCTAssertEqual(Array(overlay.body.prefix(4)), [0x89, 0x50, 0x4e, 0x47])
        let range = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/\(overlays[0])", headers: [("Range", "bytes=1-3")])
        XCTAssertEqual(range.status, 206)
        XCTAssertEqual(range.text, "PNG")
        XCTAssertEqual(range.headers.first(name: "Content-Range"), "bytes 1-3/\(overlay.body.count)")
        let escape = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/overlays/..%2F..%2Fjobs.sqlite")
        XCTAssertTrue([403, 404].contains(escape.status), "\(escape.status)")
        let reply8 = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/overlays/nope.png")
        XCTAssertEqual(reply8.status, 404)
    }

    func testVideoJobWithAnOverlayVideo() async throws {
        let server = try await TestServer.shared()
        let videos = server.root.appendingPathComponent("videos")
        try FileManager.default.createDirectory(at: videos, withIntermediateDirectories: true)
        let dog = videos.appendingPathComponent("dog.mp4")
        if !FileManager.default.fileExists(atPath: dog.path) {
            try FileManager.default.copyItem(at: TestResources.repository.appendingPathComponent("assets/videos/dog.mp4"), to: dog)
        }
        let submitted = try await server.submit("""
            name: dog
            source: { video: \(dog.path), sample: { fps: 2 } }
            stages:
              - model: efficientnet_lite0
              - topk: 1
            sink: { overlays: overlays }

            """)
        XCTAssertEqual(submitted.status, 201, submitted.text)
        let id = try XCTUnwrap((submitted.json["job"] as? [String: Any])?["id"] as? String)
        let job = try await server.waitForJob(id)
        XCTAssertEqual(job["done"] as? Int, 1)
        let events = try await server.events(id)
        let item = try XCTUnwrap(events.first { $0.name == "item" }?.data)
        let records = item["records"] as? [[String: Any]] ?? []
        XCTAssertGreaterThan(records.count, 2, "a record per sampled frame")
        XCTAssertEqual(records.compactMap { $0["frame_index"] as? Int }.count, records.count)
        let video = try XCTUnwrap((item["artifacts"] as? [String])?.first)
        XCTAssertTrue(video.hasPrefix("overlays/dog.") && video.hasSuffix(".overlay.mp4"), video)
        let head = try await server.request(.GET, "/v1/jobs/\(id)/artifacts/\(video)", headers: [("Range", "bytes=0-11")])
        XCTAssertEqual(head.status, 206)
        XCTAssertEqual(head.headers.first(name: "Content-Type"), "video/mp4")
        XCTAssertEqual(String(decoding: head.body.dropFirst(4).prefix(4), as: UTF8.self), "ftyp")
        let results = try await server.request(.GET, "/v1/jobs/\(id)/results")
        XCTAssertEqual(results.text.split(separator: "\n").count, records.count)
    }

    /// `/v1/segment` with UperNet-HorNet-T GF on seeded random weights: a palette PNG at the picture's
    /// own size, or the classes as JSON with COCO RLE, the same as a job over the same picture gives.
    func testSegmentAnswersAMaskAtThePictureSize() async throws {
        let server = try await TestServer.shared()
        let model = "upernet_hornet_tiny_gf"
        let weights = ModelStore(home: try TestServer.home()).weightsURL(for: model)
        if !FileManager.default.fileExists(atPath: weights.path) { try RandomWeights.write(model: model, seed: 11, to: weights) }
        let chelsea = server.root.appendingPathComponent("photos/chelsea.png")
        let picture = try ImageDecoder().decode(contentsOf: chelsea)
        let png = try await server.request(.POST, "/v1/segment?model=\(model)", body: try Data(contentsOf: chelsea))
        XCTAssertEqual(png.status, 200, png.text)
        XCTAssertEqual(png.headers.first(name: "Content-Type"), "image/png")
        let mask = try ImageDecoder(appliesEXIFOrientation: false).decode(png.body, name: "mask")
        XCTAssertEqual([mask.width, mask.height], [picture.width, picture.height])

        let json = try await server.request(.POST, "/v1/segment?model=\(model)&format=json", body: try Data(contentsOf: chelsea))
        XCTAssertEqual(json.status, 200, json.text)
        let summary = try XCTUnwrap(json.json["mask"] as? [String: Any])
        let classes = summary["classes"] as? [[String: Any]] ?? []
        XCTAssertEqual(classes.compactMap { $0["pixels"] as? Int }.reduce(0, +), picture.width * picture.height)
        XCTAssertTrue(classes.allSatisfy { $0["rle"] != nil }, "COCO RLE unless rle=false")

        let submitted = try await server.submit("name: seg\nsource: { images: \(chelsea.path) }\nstages:\n  - model: \(model)\n  - rle: true\n")
        let id = try XCTUnwrap((submitted.json["job"] as? [String: Any])?["id"] as? String)
        _ = try await server.waitForJob(id, timeout: 300)
        let results = try await server.request(.GET, "/v1/jobs/\(id)/results")
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(results.text.utf8)) as? [String: Any])
        let fromJob = (record["mask"] as? [String: Any])?["classes"] as? [[String: Any]] ?? []
        XCTAssertEqual(fromJob.map { [$0["index"] as? Int, $0["pixels"] as? Int] }, classes.map { [$0["index"] as? Int, $0["pixels"] as? Int] })
    }

    func testCancelMidJobKeepsWhatFinished() async throws {
        let server = try await TestServer.shared()
        // 400 copies of the largest photo (links inside the root are fine): several seconds of work.
        let count = 400
        let many = server.root.appendingPathComponent("many")
        try FileManager.default.createDirectory(at: many, withIntermediateDirectories: true)
        for index in 0..<count {
            try FileManager.default.createSymbolicLink(at: many.appendingPathComponent(String(format: "%03d.png", index)),
                                                       withDestinationURL: server.root.appendingPathComponent("photos/astronaut.png"))
        }
        let submitted = try await server.submit("name: many\nsource: { images: \(many.path) }\nstages:\n  - model: efficientnet_lite0\n    batch: 1\n")
        let id = try XCTUnwrap((submitted.json["job"] as? [String: Any])?["id"] as? String)
        // Interactive requests are served while the job runs: they share the lane batch by batch.
        let photo = try Data(contentsOf: server.root.appendingPathComponent("photos/astronaut.png"))
        _ = try await server.events(id, stopAfterItems: 1)
        let answer = try await server.request(.POST, "/v1/classify", body: photo)
        XCTAssertEqual(answer.status, 200)
        let during = try await server.request(.GET, "/v1/jobs/\(id)").json
        XCTAssertLessThan((during["done"] as? Int) ?? count, count, "the classify request did not wait for the job's end")
        let cancelled = try await server.request(.DELETE, "/v1/jobs/\(id)")
        XCTAssertEqual(cancelled.status, 202)
        let final = try await server.waitForJob(id)
        XCTAssertEqual(final["state"] as? String, "cancelled")
        let done = final["done"] as? Int ?? 0
        XCTAssertGreaterThan(done, 0)
        XCTAssertLessThan(done, count)
        let results = try await server.request(.GET, "/v1/jobs/\(id)/results")
        XCTAssertEqual(results.text.split(separator: "\n").count, done, "every finished item kept, once")
        let events = try await server.events(id)
        XCTAssertEqual(events.filter { $0.name == "item" }.count, done)
        XCTAssertEqual(events.last?.data["state"] as? String, "cancelled")
    }

    func testMetrics() async throws {
        let server = try await TestServer.shared()
        _ = try await server.request(.GET, "/healthz", token: nil)
        let photo = try Data(contentsOf: server.root.appendingPathComponent("more/orange.jpg"))
        _ = try await server.request(.POST, "/v1/classify", body: photo)
        let submitted = try await server.submit("name: metrics\nsource: { images: \(server.root.path)/more }\nstages:\n  - model: efficientnet_lite0\n")
        _ = try await server.waitForJob(try XCTUnwrap((submitted.json["job"] as? [String: Any])?["id"] as? String))
        let metrics = try await server.request(.GET, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        for name in [#"hb_requests{http_route="/v1/classify",http_request_method="POST",http_response_status_code="200"}"#,
                     "http_server_request_duration_bucket", "sluice_items_total", "sluice_frames_total",
                     "sluice_batch_frames", "sluice_lane_depth", "sluice_model_load_seconds"] {
            XCTAssertTrue(metrics.text.contains(name), "/metrics has \(name)")
        }
    }

    func testAFullQueueAnswers429() async throws {
        let server = try await TestServer.start { $0.queueLimit = 2 }
        let photo = try Data(contentsOf: server.root.appendingPathComponent("photos/astronaut.png"))
        let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
            for _ in 0..<16 {
                group.addTask {
                    let reply = try await server.request(.POST, "/v1/classify", body: photo)
                    return (reply.status, reply.headers.first(name: "Retry-After"))
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        XCTAssertEqual(statuses.filter { $0.0 != 200 && $0.0 != 429 }.count, 0, "\(statuses)")
        XCTAssertGreaterThan(statuses.filter { $0.0 == 429 }.count, 0, "16 at once against a queue of 2")
        XCTAssertGreaterThanOrEqual(statuses.filter { $0.0 == 200 }.count, 2)
        XCTAssertTrue(statuses.filter { $0.0 == 429 }.allSatisfy { $0.1 == "1" }, "429 says when to retry")
        try await server.stop()
    }
}
