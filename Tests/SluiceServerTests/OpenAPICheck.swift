import Foundation
import XCTest
import Yams
import SluiceTestSupport

/// Checks responses against `docs/openapi.yaml`: the operation and status must be documented, the
/// content type listed, and a JSON body must fit the schema (types, required properties, enums, items,
/// references). A small validator for the subset of JSON Schema the document uses.
enum OpenAPICheck {
    nonisolated(unsafe) static let document: [String: Any] = {
        let url = TestResources.repository.appendingPathComponent("docs/openapi.yaml")
        let text = (try? String(contentsOf: url, encoding: .utf8)) ?? ""
        return (try? Yams.load(yaml: text)) as? [String: Any] ?? [:]
    }()

    static func check(method: String, path: String, status: Int, contentType: String?, body: Data,
                      file: StaticString = #filePath, line: UInt = #line) {
        guard let paths = document["paths"] as? [String: Any] else { return XCTFail("docs/openapi.yaml has no paths", file: file, line: line) }
        let concrete = path.split(separator: "?")[0].split(separator: "/").map(String.init)
        guard let template = paths.keys.first(where: { matches($0, concrete) }),
              let item = paths[template] as? [String: Any],
              let operation = item[method.lowercased()] as? [String: Any] else {
            return XCTFail("\(method) \(path) is not in docs/openapi.yaml", file: file, line: line)
        }
        guard let responses = operation["responses"] as? [String: Any],
              let response = responses[String(status)] as? [String: Any] else {
            return XCTFail("\(method) \(template): status \(status) is not documented", file: file, line: line)
        }
        guard let content = response["content"] as? [String: Any] else { return }
        let type = contentType.map { String($0.split(separator: ";")[0]).trimmingCharacters(in: .whitespaces) } ?? ""
        guard let media = content[type] as? [String: Any] else {
            return XCTFail("\(method) \(template) \(status): content type '\(type)' is not documented (\(content.keys.sorted()))", file: file, line: line)
        }
        guard type == "application/json", let schema = media["schema"] as? [String: Any] else { return }
        guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) else {
            return XCTFail("\(method) \(template) \(status): the body is not JSON", file: file, line: line)
        }
        for problem in validate(value, schema, at: "$") {
            XCTFail("\(method) \(template) \(status): \(problem)", file: file, line: line)
        }
    }

    static func matches(_ template: String, _ concrete: [String]) -> Bool {
        let parts = template.split(separator: "/").map(String.init)
        if parts.last == "{path}" {
            guard concrete.count >= parts.count else { return false }
        } else if parts.count != concrete.count {
            return false
        }
        return zip(parts, concrete).allSatisfy { $0.hasPrefix("{") || $0 == $1 }
    }

    static func resolve(_ schema: [String: Any]) -> [String: Any] {
        guard let reference = schema["$ref"] as? String, reference.hasPrefix("#/") else { return schema }
        var node: Any = document
        for key in reference.dropFirst(2).split(separator: "/") { node = (node as? [String: Any])?[String(key)] ?? [:] }
        return node as? [String: Any] ?? [:]
    }

    /// Every way `value` breaks `schema`, with where.
    static func validate(_ value: Any, _ raw: [String: Any], at where_: String) -> [String] {
        let schema = resolve(raw)
        var problems: [String] = []
        let types = (schema["type"] as? [String]) ?? (schema["type"] as? String).map { [$0] } ?? []
        if !types.isEmpty && !types.contains(where: { fits(value, $0) }) {
            return ["\(where_): \(describe(value)) is not \(types.joined(separator: " or "))"]
        }
        if let allowed = schema["enum"] as? [Any], let text = value as? String, !allowed.contains(where: { ($0 as? String) == text }) {
            problems.append("\(where_): '\(text)' is not one of \(allowed)")
        }
        if let object = value as? [String: Any] {
            for key in schema["required"] as? [String] ?? [] where object[key] == nil {
                problems.append("\(where_): missing '\(key)'")
            }
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for (key, child) in object {
                if let sub = properties[key] as? [String: Any] { problems += validate(child, sub, at: "\(where_).\(key)") }
            }
        }
        if let array = value as? [Any], let items = schema["items"] as? [String: Any] {
            for (index, child) in array.enumerated() { problems += validate(child, items, at: "\(where_)[\(index)]") }
        }
        return problems
    }

    static func fits(_ value: Any, _ type: String) -> Bool {
        switch type {
        case "null": return value is NSNull
        case "object": return value is [String: Any]
        case "array": return value is [Any]
        case "string": return value is String
        case "boolean": return value is Bool
        case "integer": return (value as? NSNumber).map { $0.doubleValue.rounded() == $0.doubleValue } ?? false
        case "number": return value is NSNumber
        default: return true
        }
    }

    static func describe(_ value: Any) -> String {
        switch value {
        case is NSNull: "null"
        case is String: "a string"
        case is [Any]: "an array"
        case is [String: Any]: "an object"
        default: "\(value)"
        }
    }
}
