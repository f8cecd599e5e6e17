import Foundation

// A small pickle virtual machine (protocols 2-5) for reading torch checkpoints without Python.
// It builds values only: GLOBAL/REDUCE/NEWOBJ never execute anything. Calls to the few globals a
// state dict needs (OrderedDict, torch's tensor-rebuild functions) are interpreted; any other call
// becomes an opaque `PickleObject` that records its class and arguments.

/// Lists and dicts are classes because pickles have reference semantics: a container is memoized
/// (BINPUT) before APPENDS/SETITEMS fill it, and later BINGETs must see the filled container.
final class PickleList {
    var items: [PickleValue] = []
}

/// Every container one machine built, so its user can empty them all when done with the values: a
/// hostile pickle can put a container inside itself (memoize it, get it back, append it), a reference
/// cycle that would never be freed (found by scripts/fuzz checkpoint as a leak per load).
final class PickleArena {
    private var lists: [PickleList] = []
    private var dicts: [PickleDict] = []
    private var objects: [PickleObject] = []

    func list() -> PickleList { let made = PickleList(); lists.append(made); return made }
    func dict() -> PickleDict { let made = PickleDict(); dicts.append(made); return made }
    func object(typeName: String, arguments: [PickleValue]) -> PickleObject {
        let made = PickleObject(typeName: typeName, arguments: arguments)
        objects.append(made)
        return made
    }

    /// Empties every container, which breaks any cycle among them; their values are gone after this.
    func release() {
        for list in lists { list.items = [] }
        for dict in dicts { dict.removeAll() }
        for object in objects { object.removeAll() }
        lists = []; dicts = []; objects = []
    }
}

final class PickleDict {
    private(set) var entries: [(key: PickleValue, value: PickleValue)] = []
    private var indexOfStringKey: [String: Int] = [:]
    /// The BUILD state applied to the dict (an OrderedDict's `__dict__`, e.g. torch's `_metadata`).
    var state: PickleValue?

    func set(_ value: PickleValue, forKey key: PickleValue) {
        if let name = key.string {
            if let index = indexOfStringKey[name] {
                entries[index].value = value
                return
            }
            indexOfStringKey[name] = entries.count
        }
        entries.append((key, value))
    }

    subscript(key: String) -> PickleValue? {
        indexOfStringKey[key].map { entries[$0].value }
    }

    func removeAll() { entries = []; indexOfStringKey = [:]; state = nil }
}

/// An instance of a class the machine does not interpret (e.g. an optimizer, an nn.Module).
final class PickleObject {
    let typeName: String
    private(set) var arguments: [PickleValue]
    var state: PickleValue?

    init(typeName: String, arguments: [PickleValue]) {
        self.typeName = typeName
        self.arguments = arguments
    }

    func removeAll() { arguments = []; state = nil }
}

/// A torch storage as named by a persistent id: which storage, its element type and size, and (for
/// legacy storage views) where the view starts inside the root storage.
struct TorchStorageReference {
    /// The storage's key: the zip entry name under `data/`, or the legacy root key.
    let key: String
    /// The storage class name, e.g. "FloatStorage".
    let typeName: String
    /// Nil for element types Sluice does not convert (complex, quantized).
    let dtype: CheckpointDType?
    /// Bytes per element (known even for unsupported types, so legacy readers can step over them);
    /// nil for storage classes Sluice does not know at all.
    let elementWidth: Int?
    /// Elements in the root storage, as the persistent id declares.
    let elementCount: Int
    /// Element offset of a legacy storage view inside its root storage (0 otherwise).
    let viewOffset: Int
}

/// A tensor the pickle rebuilt: a strided view into a storage whose bytes are read afterwards.
struct TorchTensorReference {
    let storage: TorchStorageReference
    let view: StridedView
}

enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    /// An integer wider than 64 bits: little-endian two's-complement bytes (the torch magic number).
    case bigInt([UInt8])
    case float(Double)
    case string(String)
    case bytes([UInt8])
    case tuple([PickleValue])
    case list(PickleList)
    case dict(PickleDict)
    case global(module: String, name: String)
    case object(PickleObject)
    case storage(TorchStorageReference)
    case tensor(TorchTensorReference)

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var int: Int? {
        switch self {
        case .int(let value): return value
        case .bool(let value): return value ? 1 : 0
        default: return nil
        }
    }

    /// The elements of a tuple or list.
    var sequence: [PickleValue]? {
        switch self {
        case .tuple(let items): return items
        case .list(let list): return list.items
        default: return nil
        }
    }

    /// A short description for notes and error messages.
    var kindDescription: String {
        switch self {
        case .none: return "None"
        case .bool: return "bool"
        case .int, .bigInt: return "int"
        case .float: return "float"
        case .string: return "str"
        case .bytes: return "bytes"
        case .tuple: return "tuple"
        case .list: return "list"
        case .dict: return "dict"
        case .global(let module, let name): return "\(module).\(name)"
        case .object(let object): return "\(object.typeName) object"
        case .storage(let storage): return storage.typeName
        case .tensor: return "tensor"
        }
    }
}

/// Runs pickles in `bytes` from `position` on; `load()` runs one pickle up to its STOP, so a legacy
/// torch file (several pickles back to back) is read by calling it repeatedly.
struct PickleMachine {
    let bytes: UnsafeRawBufferPointer
    /// Names the file (and entry) in errors.
    let file: String
    private(set) var position: Int
    /// Turns a persistent id (BINPERSID) into a value; torch uses it to name storages.
    var persistentLoad: (PickleValue) throws -> PickleValue = { _ in .none }

    private var stack: [PickleValue] = []
    private var markPositions: [Int] = []
    private var memo: [Int: PickleValue] = [:]

    /// Where the containers go; `arena.release()` once the values are no longer needed.
    let arena: PickleArena

    init(bytes: UnsafeRawBufferPointer, position: Int = 0, file: String, arena: PickleArena) {
        self.bytes = bytes
        self.position = position
        self.file = file
        self.arena = arena
    }

    /// Runs one pickle to its STOP opcode and returns the object it built.
    mutating func load() throws -> PickleValue {
        stack.removeAll(keepingCapacity: true)
        markPositions.removeAll(keepingCapacity: true)
        memo.removeAll(keepingCapacity: true)
        while true {
            let opcodeOffset = position
            let opcode = try readByte()
            switch opcode {
            case 0x80: _ = try readByte()                                     // PROTO
            case 0x95: _ = try readInteger(UInt64.self)                        // FRAME: framing is only a read-ahead hint
            case 0x2e:                                                         // STOP
                return try pop()
            case 0x28: markPositions.append(stack.count)                       // MARK
            case 0x30: _ = try pop()                                           // POP
            case 0x31: _ = try popToMark()                                     // POP_MARK
            case 0x32: stack.append(try top())                                 // DUP

            case 0x4e: stack.append(.none)                                     // NONE
            case 0x88: stack.append(.bool(true))                               // NEWTRUE
            case 0x89: stack.append(.bool(false))                              // NEWFALSE
            case 0x4a: stack.append(.int(Int(try readInteger(Int32.self))))    // BININT
            case 0x4b: stack.append(.int(Int(try readByte())))                 // BININT1
            case 0x4d: stack.append(.int(Int(try readInteger(UInt16.self))))   // BININT2
            case 0x8a: stack.append(try readLong(byteCount: Int(try readByte())))          // LONG1
            case 0x8b: stack.append(try readLong(byteCount: try readLength(UInt32.self)))  // LONG4
            case 0x47:                                                         // BINFLOAT (big-endian)
                stack.append(.float(Double(bitPattern: UInt64(bigEndian: try readInteger(UInt64.self)))))

            case 0x58: stack.append(.string(try readUTF8(try readLength(UInt32.self))))   // BINUNICODE
            case 0x8c: stack.append(.string(try readUTF8(Int(try readByte()))))           // SHORT_BINUNICODE
            case 0x8d: stack.append(.string(try readUTF8(try readLength(UInt64.self))))   // BINUNICODE8
            // Python 2 `str`: torch.load decodes these to str as well.
            case 0x54: stack.append(.string(try readLegacyString(try readLength(Int32.self))))   // BINSTRING
            case 0x55: stack.append(.string(try readLegacyString(Int(try readByte()))))          // SHORT_BINSTRING
            case 0x42: stack.append(.bytes(try readBytes(try readLength(UInt32.self))))   // BINBYTES
            case 0x43: stack.append(.bytes(try readBytes(Int(try readByte()))))           // SHORT_BINBYTES
            case 0x8e: stack.append(.bytes(try readBytes(try readLength(UInt64.self))))   // BINBYTES8

            case 0x7d: stack.append(.dict(arena.dict()))                       // EMPTY_DICT
            case 0x64:                                                         // DICT
                let items = try popToMark()
                let dict = arena.dict()
                try setItems(items, in: dict)
                stack.append(.dict(dict))
            case 0x5d: stack.append(.list(arena.list()))                       // EMPTY_LIST
            case 0x6c:                                                         // LIST
                let list = arena.list()
                list.items = try popToMark()
                stack.append(.list(list))
            case 0x8f: stack.append(.list(arena.list()))                       // EMPTY_SET (kept as a list)
            case 0x91: stack.append(.tuple(try popToMark()))                   // FROZENSET (kept as a tuple)
            case 0x29: stack.append(.tuple([]))                                // EMPTY_TUPLE
            case 0x74: stack.append(.tuple(try popToMark()))                   // TUPLE
            case 0x85: stack.append(.tuple([try pop()]))                       // TUPLE1
            case 0x86:                                                         // TUPLE2
                let second = try pop(), first = try pop()
                stack.append(.tuple([first, second]))
            case 0x87:                                                         // TUPLE3
                let third = try pop(), second = try pop(), first = try pop()
                stack.append(.tuple([first, second, third]))

            case 0x61:                                                         // APPEND
                let item = try pop()
                append([item], to: try top())
            case 0x65, 0x90:                                                   // APPENDS, ADDITEMS
                let items = try popToMark()
                append(items, to: try top())
            case 0x73:                                                         // SETITEM
                let value = try pop(), key = try pop()
                if case .dict(let dict) = try top() { dict.set(value, forKey: key) }
            case 0x75:                                                         // SETITEMS
                let items = try popToMark()
                if case .dict(let dict) = try top() { try setItems(items, in: dict) }

            case 0x63:                                                         // GLOBAL "module\nname\n"
                let module = try readLine(), name = try readLine()
                stack.append(.global(module: module, name: name))
            case 0x93:                                                         // STACK_GLOBAL
                let name = try pop(), module = try pop()
                guard let moduleName = module.string, let globalName = name.string else {
                    throw malformed("STACK_GLOBAL at byte \(opcodeOffset) needs two strings")
                }
                stack.append(.global(module: moduleName, name: globalName))
            case 0x52:                                                         // REDUCE
                let arguments = try pop(), callable = try pop()
                stack.append(try call(callable, arguments: arguments.sequence ?? [arguments]))
            case 0x81:                                                         // NEWOBJ
                let arguments = try pop(), type = try pop()
                stack.append(try call(type, arguments: arguments.sequence ?? [arguments]))
            case 0x92:                                                         // NEWOBJ_EX
                _ = try pop()
                let arguments = try pop(), type = try pop()
                stack.append(try call(type, arguments: arguments.sequence ?? [arguments]))
            case 0x62:                                                         // BUILD
                let state = try pop()
                switch try top() {
                case .dict(let dict): dict.state = state
                case .object(let object): object.state = state
                default: break  // e.g. a tensor's empty state: nothing a state dict needs
                }
            case 0x51:                                                         // BINPERSID
                stack.append(try persistentLoad(try pop()))

            case 0x71: memo[Int(try readByte())] = try top()                   // BINPUT
            case 0x72: memo[Int(try readInteger(UInt32.self))] = try top()    // LONG_BINPUT
            case 0x94: memo[memo.count] = try top()                            // MEMOIZE
            case 0x68: stack.append(try memoized(Int(try readByte()), at: opcodeOffset))           // BINGET
            case 0x6a: stack.append(try memoized(Int(try readInteger(UInt32.self)), at: opcodeOffset))   // LONG_BINGET

            default:
                throw CheckpointError.unknownOpcode(file: file, opcode: opcode, offset: opcodeOffset)
            }
        }
    }

    // MARK: - Calls (never executed: interpreted for the known globals, recorded for the rest)

    private func call(_ callable: PickleValue, arguments: [PickleValue]) throws -> PickleValue {
        guard case .global(let module, let name) = callable else {
            return .object(arena.object(typeName: callable.kindDescription, arguments: arguments))
        }
        switch (module, name) {
        case ("collections", "OrderedDict"), ("builtins", "dict"), ("__builtin__", "dict"):
            let dict = arena.dict()
            for pair in arguments.first?.sequence ?? [] {
                if let keyValue = pair.sequence, keyValue.count == 2 { dict.set(keyValue[1], forKey: keyValue[0]) }
            }
            return .dict(dict)
        case ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"):
            return try rebuildTensor(arguments)
        case ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"):
            // (data, requires_grad, backward_hooks[, state]): a Parameter is its data for our purposes.
            return arguments.first ?? .none
        case ("torch._tensor", "_rebuild_from_type_v2"):
            // (func, new_type, args, state): tensor subclasses; rebuild with func and ignore the type.
            guard arguments.count >= 3, let innerArguments = arguments[2].sequence else { break }
            return try call(arguments[0], arguments: innerArguments)
        case ("torch", "Size"):
            return arguments.first ?? .tuple([])
        case ("_codecs", "encode"):
            // Protocol-2 pickles spell `bytes` as _codecs.encode(text, 'latin1').
            if let text = arguments.first?.string {
                return .bytes(text.unicodeScalars.map { UInt8(truncatingIfNeeded: $0.value) })
            }
        default:
            break
        }
        return .object(arena.object(typeName: "\(module).\(name)", arguments: arguments))
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])`
    /// and the older `_rebuild_tensor(storage, storage_offset, size, stride)`.
    private func rebuildTensor(_ arguments: [PickleValue]) throws -> PickleValue {
        guard arguments.count >= 4, case .storage(let storage) = arguments[0],
              let storageOffset = arguments[1].int,
              let shape = arguments[2].sequence?.compactMap(\.int),
              let strides = arguments[3].sequence?.compactMap(\.int),
              shape.count == arguments[2].sequence?.count, strides.count == shape.count else {
            throw malformed("torch tensor rebuilt from unexpected arguments: "
                + arguments.map(\.kindDescription).joined(separator: ", "))
        }
        let view = StridedView(offset: storage.viewOffset + storageOffset, shape: shape, strides: strides)
        return .tensor(TorchTensorReference(storage: storage, view: view))
    }

    // MARK: - Stack

    private mutating func pop() throws -> PickleValue {
        guard let value = stack.popLast() else { throw malformed("stack underflow at byte \(position - 1)") }
        if let mark = markPositions.last, stack.count < mark {
            throw malformed("popped past a MARK at byte \(position - 1)")
        }
        return value
    }

    private func top() throws -> PickleValue {
        guard let value = stack.last else { throw malformed("empty stack at byte \(position - 1)") }
        return value
    }

    private mutating func popToMark() throws -> [PickleValue] {
        guard let mark = markPositions.popLast(), mark <= stack.count else {
            throw malformed("no MARK for the opcode at byte \(position - 1)")
        }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    private func memoized(_ index: Int, at offset: Int) throws -> PickleValue {
        guard let value = memo[index] else { throw malformed("memo \(index) read before written (byte \(offset))") }
        return value
    }

    private func append(_ items: [PickleValue], to target: PickleValue) {
        if case .list(let list) = target { list.items.append(contentsOf: items) }
    }

    private func setItems(_ items: [PickleValue], in dict: PickleDict) throws {
        guard items.count % 2 == 0 else { throw malformed("odd number of items for a dict at byte \(position - 1)") }
        for pairStart in stride(from: 0, to: items.count, by: 2) {
            dict.set(items[pairStart + 1], forKey: items[pairStart])
        }
    }

    // MARK: - Reading

    private func malformed(_ detail: String) -> CheckpointError {
        .malformed(file: file, detail: "pickle: " + detail)
    }

    private func truncated(_ needed: Int) -> CheckpointError {
        .truncated(file: file, detail: "pickle needs \(needed) more bytes at byte \(position), "
            + "only \(max(0, bytes.count - position)) remain")
    }

    private mutating func readByte() throws -> UInt8 {
        guard position < bytes.count else { throw truncated(1) }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func readInteger<T: FixedWidthInteger>(_: T.Type) throws -> T {
        let size = MemoryLayout<T>.size
        guard bytes.count - position >= size else { throw truncated(size) }
        defer { position += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: position, as: T.self))
    }

    /// A length prefix, checked to be non-negative and to fit in the remaining bytes.
    private mutating func readLength<T: FixedWidthInteger>(_ type: T.Type) throws -> Int {
        let start = position
        let raw = try readInteger(type)
        guard raw >= 0, let length = Int(exactly: raw) else { throw malformed("negative length at byte \(start)") }
        guard length <= bytes.count - position else { throw truncated(length) }
        return length
    }

    private mutating func readBytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0, bytes.count - position >= count else { throw truncated(count) }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    private mutating func readUTF8(_ count: Int) throws -> String {
        guard count >= 0, bytes.count - position >= count else { throw truncated(count) }
        defer { position += count }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[position..<position + count]), as: UTF8.self)
    }

    /// Python 2 strings are bytes; take them as UTF-8 when valid, else Latin-1.
    private mutating func readLegacyString(_ count: Int) throws -> String {
        let raw = try readBytes(count)
        return String(validating: raw, as: UTF8.self)
            ?? String(String.UnicodeScalarView(raw.map { Unicode.Scalar($0) }))
    }

    private mutating func readLine() throws -> String {
        let start = position
        while position < bytes.count, bytes[position] != 0x0a { position += 1 }
        guard position < bytes.count else { throw truncated(1) }
        defer { position += 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<position]), as: UTF8.self)
    }

    /// LONG1/LONG4: little-endian two's complement; up to 8 bytes fits an Int.
    private mutating func readLong(byteCount: Int) throws -> PickleValue {
        let raw = try readBytes(byteCount)
        guard raw.count <= 8 else { return .bigInt(raw) }
        guard let last = raw.last else { return .int(0) }
        var value: UInt64 = last & 0x80 != 0 ? ~0 : 0  // sign-extend
        for byte in raw.reversed() { value = value << 8 | UInt64(byte) }
        return .int(Int(truncatingIfNeeded: value))
    }
}
