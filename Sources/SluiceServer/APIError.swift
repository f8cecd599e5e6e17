import Foundation
import Hummingbird
import NIOCore

/// A refused request: its status and one line that says what and where, sent as
/// `{"error": {"status": 400, "code": "...", "message": "...", "issues": [...]}}`. Nothing else
/// (no stack, no internal type names) reaches the client.
struct APIError: Error, HTTPResponseError, CustomStringConvertible {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    /// For a pipeline: every problem with its line and column.
    var issues: [Issue] = []
    var headers: HTTPFields = [:]

    struct Issue: Encodable {
        var line: Int
        var column: Int
        var message: String
    }

    var description: String { message }

    static func badRequest(_ message: String, code: String = "bad_request") -> APIError {
        APIError(status: .badRequest, code: code, message: message)
    }
    static func forbidden(_ message: String) -> APIError { APIError(status: .forbidden, code: "forbidden", message: message) }
    static func notFound(_ message: String) -> APIError { APIError(status: .notFound, code: "not_found", message: message) }
    static func unauthorized(_ message: String) -> APIError {
        APIError(status: .unauthorized, code: "unauthorized", message: message,
                 headers: [.wwwAuthenticate: #"Bearer realm="sluice""#])
    }
    static func tooLarge(_ limit: Int) -> APIError {
        APIError(status: .contentTooLarge, code: "too_large", message: "the body is larger than this server accepts (\(limit) bytes)")
    }
    static func unsupportedMedia(_ message: String) -> APIError {
        APIError(status: .unsupportedMediaType, code: "unsupported_media", message: message)
    }
    static func busy(retryAfter seconds: Int) -> APIError {
        APIError(status: .tooManyRequests, code: "busy",
                 message: "the model queue is full; retry after \(seconds) s",
                 headers: [.retryAfter: String(seconds)])
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = ErrorBody(error: .init(status: Int(status.code), code: code, message: message, issues: issues.isEmpty ? nil : issues))
        var response = JSON.response(body, status: status)
        for field in headers { response.headers.append(field) }
        return response
    }
}

enum JSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static func data(_ value: some Encodable) -> Data {
        (try? encoder.encode(value)) ?? Data("{}".utf8)
    }

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: data(value))))
    }
}

private struct ErrorBody: Encodable {
    struct Inner: Encodable {
        var status: Int
        var code: String
        var message: String
        var issues: [APIError.Issue]?
    }
    var error: Inner
}
