// The WordPiece tokenizer of BERT, equal to Hugging Face's slow `BertTokenizer(do_lower_case=True)`
// (transformers 4.30 `tokenization_bert.py` and `PreTrainedTokenizer.tokenize`):
//   1. special tokens written in the text ("[SEP]", case-sensitive) stay whole, and the whitespace next
//      to them goes; everything else is lower-cased one code point at a time (HF's regex lowers each
//      character alone, so Greek final sigma never applies);
//   2. BasicTokenizer: drop U+0000, U+FFFD and every C* code point except \t \n \r; whitespace → space;
//      spaces around CJK ideographs; split on whitespace; NFD and drop Mn marks; split off punctuation;
//   3. WordPiece: greedy longest match first, "##" continuations, a word over 100 code points or with
//      no match is one [UNK].
// Everything counts Unicode scalars, as Python's `str` does, never Swift `Character`s; the vocabulary
// is keyed by UTF-8 bytes because Swift `String` equality is canonical equivalence ("하" would
// equal the jamo "하"), which Python's is not.

import Foundation

public struct BertTokenizer: Sendable {
    public enum TokenizerError: Error, CustomStringConvertible {
        case unreadableVocabulary(String, String)
        case missingToken(String, file: String)
        public var description: String {
            switch self {
            case .unreadableVocabulary(let path, let why): return "\(path): cannot read the vocabulary: \(why)"
            case .missingToken(let token, let file): return "\(file): the vocabulary has no \(token) token"
            }
        }
    }

    /// Token text by id (vocab.txt's lines).
    public let tokens: [String]
    private let ids: [[UInt8]: Int32]
    public let clsID: Int32, sepID: Int32, padID: Int32, unkID: Int32
    /// Special tokens kept whole when they appear in the text, with their ids.
    private let specialTokens: [(scalars: [Unicode.Scalar], id: Int32)]
    /// HF's `max_input_chars_per_word`.
    public static let maxCharactersPerWord = 100

    /// A vocabulary of one token per line (vocab.txt); as HF's `load_vocab`, a repeated token keeps
    /// the id of its last line.
    public init(vocabulary lines: [String], source: String = "vocabulary") throws {
        tokens = lines
        var ids: [[UInt8]: Int32] = [:]
        ids.reserveCapacity(lines.count)
        for (index, token) in lines.enumerated() { ids[Array(token.utf8)] = Int32(index) }
        self.ids = ids
        func id(_ token: String) throws -> Int32 {
            guard let id = ids[Array(token.utf8)] else { throw TokenizerError.missingToken(token, file: source) }
            return id
        }
        clsID = try id("[CLS]"); sepID = try id("[SEP]"); padID = try id("[PAD]"); unkID = try id("[UNK]")
        // HF's `all_special_tokens` for BERT; [MASK] is optional in a vocabulary.
        specialTokens = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"].compactMap { token in
            ids[Array(token.utf8)].map { (Array(token.unicodeScalars), $0) }
        }
    }

    /// Reads vocab.txt (UTF-8, one token a line).
    public init(contentsOf url: URL) throws {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TokenizerError.unreadableVocabulary(url.path, error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TokenizerError.unreadableVocabulary(url.path, "not UTF-8")
        }
        // Python's text mode reads "\r\n" as one line end; `rstrip("\n")` keeps every other character.
        var lines = text.replacingOccurrences(of: "\r\n", with: "\n").split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
        if lines.last == "" { lines.removeLast() }
        try self.init(vocabulary: lines, source: url.path)
    }

    public var vocabularySize: Int { tokens.count }

    /// The token ids of `text` without [CLS]/[SEP] (HF's `tokenize` then `convert_tokens_to_ids`).
    public func tokenIDs(_ text: String) -> [Int32] {
        var output: [Int32] = []
        for segment in splitOnSpecialTokens(Array(text.unicodeScalars)) {
            switch segment {
            case .special(let id): output.append(id)
            case .text(let scalars):
                for word in basicTokens(scalars) { wordPiece(word, into: &output) }
            }
        }
        return output
    }

    /// [CLS] ids [SEP], keeping the first `maxLength - 2` tokens when `maxLength` is given (HF's
    /// `truncation=True` for one sequence).
    public func encode(_ text: String, maxLength: Int? = nil) -> [Int32] {
        var body = tokenIDs(text)
        if let maxLength { body = Array(body.prefix(max(0, maxLength - 2))) }
        return [clsID] + body + [sepID]
    }

    /// Texts encoded, truncated to `maxLength` and padded with [PAD] to the longest of them (or to
    /// `maxLength` itself when `padToMaxLength`), with the attention mask (1 = token, 0 = padding).
    public func batch(_ texts: [String], maxLength: Int, padToMaxLength: Bool = false) -> BertBatch {
        let encoded = texts.map { encode($0, maxLength: maxLength) }
        let length = padToMaxLength ? maxLength : (encoded.map(\.count).max() ?? 0)
        var ids = [Int32](repeating: padID, count: texts.count * length)
        var mask = [Int32](repeating: 0, count: texts.count * length)
        for (row, sequence) in encoded.enumerated() {
            for (column, id) in sequence.enumerated() {
                ids[row * length + column] = id
                mask[row * length + column] = 1
            }
        }
        return BertBatch(count: texts.count, length: length, ids: ids, attentionMask: mask)
    }

    // MARK: - Special tokens and lower-casing

    enum Segment { case text([Unicode.Scalar]), special(Int32) }

    /// HF's added-token split: special tokens stay whole (earliest match first), the text beside them
    /// loses its adjacent whitespace, and the text is lower-cased code point by code point.
    func splitOnSpecialTokens(_ scalars: [Unicode.Scalar]) -> [Segment] {
        var segments: [Segment] = []
        var pending: [Unicode.Scalar] = []
        var index = 0
        func flushPending(stripTrailing: Bool) {
            var text = pending
            if stripTrailing { while let last = text.last, Self.isPythonSpace(last) { text.removeLast() } }
            if case .special = segments.last { text = Array(text.drop(while: Self.isPythonSpace)) }
            if !text.isEmpty { segments.append(.text(text)) }
            pending.removeAll(keepingCapacity: true)
        }
        outer: while index < scalars.count {
            if scalars[index] == "[" {
                for special in specialTokens where scalars[index...].starts(with: special.scalars) {
                    flushPending(stripTrailing: true)
                    segments.append(.special(special.id))
                    index += special.scalars.count
                    continue outer
                }
            }
            Self.appendLowercased(scalars[index], to: &pending)
            index += 1
        }
        flushPending(stripTrailing: false)
        return segments
    }

    /// Python's `str.lower()` of one code point (the full Unicode mapping: "İ" → "i̇").
    @inline(__always)
    static func appendLowercased(_ scalar: Unicode.Scalar, to output: inout [Unicode.Scalar]) {
        if scalar.isASCII {
            let v = scalar.value
            output.append(v >= 65 && v <= 90 ? Unicode.Scalar(v + 32)! : scalar)
            return
        }
        // Python's `.` (HF's lower-casing regex) never matches "\n"; it is ASCII anyway.
        output.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
    }

    // MARK: - BasicTokenizer

    /// The words of lower-cased text after cleaning, CJK spacing, accent stripping and punctuation
    /// splitting, each as its code points.
    func basicTokens(_ text: [Unicode.Scalar]) -> [[Unicode.Scalar]] {
        var cleaned: [Unicode.Scalar] = []
        cleaned.reserveCapacity(text.count)
        for scalar in text {
            let v = scalar.value
            if v == 0 || v == 0xFFFD || Self.isControl(scalar) { continue }
            if Self.isWhitespace(scalar) {
                cleaned.append(" ")
            } else if Self.isCJK(v) {
                cleaned.append(" "); cleaned.append(scalar); cleaned.append(" ")
            } else {
                cleaned.append(scalar)
            }
        }
        var words: [[Unicode.Scalar]] = []
        for token in cleaned.split(whereSeparator: Self.isPythonSpace) {
            let stripped = Self.stripAccents(token)
            var current: [Unicode.Scalar] = []
            for scalar in stripped {
                if Self.isPunctuation(scalar) {
                    if !current.isEmpty { words.append(current); current.removeAll() }
                    words.append([scalar])
                } else {
                    current.append(scalar)
                }
            }
            if !current.isEmpty { words.append(current) }
        }
        return words
    }

    /// NFD, then without nonspacing marks (Mn).
    static func stripAccents(_ token: ArraySlice<Unicode.Scalar>) -> [Unicode.Scalar] {
        // ASCII needs no decomposition (the common case, and Foundation's NFD is not free).
        if token.allSatisfy(\.isASCII) { return Array(token) }
        var view = String.UnicodeScalarView()
        view.append(contentsOf: token)
        let decomposed = String(view).decomposedStringWithCanonicalMapping
        return decomposed.unicodeScalars.filter { $0.properties.generalCategory != .nonspacingMark }
    }

    /// HF's `_is_control`: any C* category except \t, \n, \r.
    static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 9, 10, 13: return false
        case 32...126: return false
        default: break
        }
        switch scalar.properties.generalCategory {
        case .control, .format, .surrogate, .privateUse, .unassigned: return true
        default: return false
        }
    }

    /// HF's `_is_whitespace`: space, \t, \n, \r or Zs.
    static func isWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 32, 9, 10, 13: return true
        case 33...126: return false
        default: return scalar.properties.generalCategory == .spaceSeparator
        }
    }

    /// Python's `str.isspace()` (what `str.split()` and `strip()` split on).
    static func isPythonSpace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default: return false
        }
    }

    /// HF's `_is_punctuation`: every non-alphanumeric printable ASCII character, and Unicode P*.
    static func isPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 33...47, 58...64, 91...96, 123...126: return true
        case 0..<128: return false
        default: break
        }
        switch scalar.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }

    /// HF's `_is_chinese_char`: the CJK Unified Ideograph blocks (not kana or hangul).
    static func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v)
            || (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v)
            || (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }

    // MARK: - WordPiece

    /// Greedy longest-match-first pieces of one word, or one [UNK] when the word is too long or some
    /// part of it matches nothing.
    func wordPiece(_ word: [Unicode.Scalar], into output: inout [Int32]) {
        guard word.count <= Self.maxCharactersPerWord else { output.append(unkID); return }
        // UTF-8 bytes of the word and where each code point starts, so candidates are byte slices.
        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        for scalar in word {
            UTF8.encode(scalar, into: { bytes.append($0) })
            offsets.append(bytes.count)
        }
        let start0 = output.count
        var key: [UInt8] = []
        key.reserveCapacity(bytes.count + 2)
        var start = 0
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                key.removeAll(keepingCapacity: true)
                if start > 0 { key.append(0x23); key.append(0x23) }  // "##"
                key.append(contentsOf: bytes[offsets[start]..<offsets[end]])
                if let id = ids[key] { found = id; break }
                end -= 1
            }
            guard let found else {
                output.removeSubrange(start0...)
                output.append(unkID)
                return
            }
            output.append(found)
            start = end
        }
    }
}

/// Token ids of several texts, padded to one length, row-major [count, length].
public struct BertBatch: Sendable, Equatable {
    public var count: Int
    public var length: Int
    public var ids: [Int32]
    /// 1 for a token, 0 for padding.
    public var attentionMask: [Int32]
    public init(count: Int, length: Int, ids: [Int32], attentionMask: [Int32]) {
        precondition(ids.count == count * length && attentionMask.count == ids.count, "batch of \(count)x\(length) holds \(ids.count) ids")
        self.count = count; self.length = length; self.ids = ids; self.attentionMask = attentionMask
    }
}
