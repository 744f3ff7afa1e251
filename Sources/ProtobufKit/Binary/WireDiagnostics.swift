internal import CProtobufC

/// Walks binary input against a protobuf-c descriptor to say precisely what is wrong with it.
///
/// protobuf-c's unpack returns NULL with no reason, so when it fails this walk finds the first
/// problem and names the message, the field and the offset. It also explains what the C scan
/// before unpack (`CProtobufC_scan`) refused: nesting deeper than `maxDepth`, or a string field
/// holding U+0000 (named by its path from the outermost message, `package_info.tags[2]`).
enum WireDiagnostics {
    /// Deepest nesting accepted (the limit of Google's runtimes).
    static let maxDepth = maxNestingDepth

    static func explain(_ buffer: UnsafeRawBufferPointer, descriptor: UnsafeRawPointer) -> ProtobufDecodingError {
        var walker = Walker(bytes: buffer.bindMemory(to: UInt8.self))
        do {
            try walker.walk(0, buffer.count, descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), depth: 0)
        } catch let error as ProtobufDecodingError {
            return error
        } catch {}
        let name = String(cString: descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self).pointee.name)
        return ProtobufDecodingError(.malformed, "\(name): protobuf-c rejected the input (\(buffer.count) bytes)")
    }

    struct Walker {
        let bytes: UnsafeBufferPointer<UInt8>
        var depthOnly = false
        /// Field names (with repeat indexes) from the outermost message to the current one.
        var path: [String] = []
        /// The outermost message's name, for errors that name a path from it.
        var root = ""

        func fail(_ code: ProtobufDecodingError.Code, _ message: UnsafePointer<ProtobufCMessageDescriptor>, _ text: String) -> ProtobufDecodingError {
            ProtobufDecodingError(code, "\(String(cString: message.pointee.name)): \(text)")
        }

        func varint(_ position: inout Int, _ end: Int, _ message: UnsafePointer<ProtobufCMessageDescriptor>) throws -> UInt64 {
            var result: UInt64 = 0
            var shift: UInt64 = 0
            let start = position
            while true {
                guard position < end else { throw fail(.truncated, message, "varint at offset \(start) is cut off by the end of the input") }
                let byte = bytes[position]
                position += 1
                if shift == 63 && byte > 1 { throw fail(.malformed, message, "varint at offset \(start) is longer than 10 bytes") }
                result |= UInt64(byte & 0x7f) << shift
                if byte & 0x80 == 0 { return result }
                shift += 7
                if shift > 63 { throw fail(.malformed, message, "varint at offset \(start) is longer than 10 bytes") }
            }
        }

        /// The wire type protobuf-c expects for a field type (length-delimited for packed repeats too).
        static func expectedWireType(_ type: ProtobufCType) -> UInt64 {
            switch type {
            case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_INT64,
                 PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_BOOL, PROTOBUF_C_TYPE_ENUM:
                return 0
            case PROTOBUF_C_TYPE_FIXED64, PROTOBUF_C_TYPE_SFIXED64, PROTOBUF_C_TYPE_DOUBLE:
                return 1
            case PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_FLOAT:
                return 5
            default:
                return 2
            }
        }

        mutating func walk(_ start: Int, _ end: Int, _ message: UnsafePointer<ProtobufCMessageDescriptor>, depth: Int) throws {
            if depth == 0 { root = String(cString: message.pointee.name) }
            if depth > WireDiagnostics.maxDepth {
                throw fail(.tooDeep, message, "messages are nested more than \(WireDiagnostics.maxDepth) deep")
            }
            // How often each repeated field has occurred so far, for paths such as `tags[2]`.
            var occurrences: [UInt32: Int] = [:]
            var position = start
            while position < end {
                let tagOffset = position
                let tag = try varint(&position, end, message)
                let number = tag >> 3
                let wireType = tag & 7
                guard number > 0, number <= 536_870_911 else {
                    throw fail(.malformed, message, "invalid field number \(number) at offset \(tagOffset)")
                }
                if wireType == 3 || wireType == 4 {
                    throw fail(.wrongWireType, message, "field \(number) at offset \(tagOffset) uses a group wire type (\(wireType)), which proto3 does not have")
                }
                if wireType == 6 || wireType == 7 {
                    throw fail(.wrongWireType, message, "field \(number) at offset \(tagOffset) has invalid wire type \(wireType)")
                }
                let field = protobuf_c_message_descriptor_get_field(message, UInt32(number))
                let fieldName = field.map { "field \(number) (\(String(cString: $0.pointee.name)))" } ?? "field \(number)"
                if let field, !depthOnly {
                    let expected = Self.expectedWireType(field.pointee.type)
                    let packedOK = wireType == 2 && field.pointee.label == PROTOBUF_C_LABEL_REPEATED && expected != 2
                    if wireType != expected && !packedOK {
                        throw fail(.wrongWireType, message, "\(fieldName) at offset \(tagOffset) has wire type \(wireType), its type needs \(expected)")
                    }
                }
                switch wireType {
                case 0:
                    _ = try varint(&position, end, message)
                case 1:
                    guard end - position >= 8 else { throw fail(.truncated, message, "\(fieldName): 8-byte value cut off by the end of the input") }
                    position += 8
                case 5:
                    guard end - position >= 4 else { throw fail(.truncated, message, "\(fieldName): 4-byte value cut off by the end of the input") }
                    position += 4
                case 2:
                    let length = try varint(&position, end, message)
                    guard length <= UInt64(end - position) else {
                        throw fail(.truncated, message, "\(fieldName): length \(length) runs past the end of the input (\(end - position) bytes left)")
                    }
                    let payloadEnd = position + Int(length)
                    if let field {
                        var component = String(cString: field.pointee.name)
                        if field.pointee.label == PROTOBUF_C_LABEL_REPEATED {
                            let index = occurrences[UInt32(number), default: 0]
                            occurrences[UInt32(number)] = index + 1
                            component += "[\(index)]"
                        }
                        if field.pointee.type == PROTOBUF_C_TYPE_MESSAGE, let nested = field.pointee.descriptor {
                            path.append(component)
                            defer { path.removeLast() }
                            do {
                                try walk(position, payloadEnd, nested.assumingMemoryBound(to: ProtobufCMessageDescriptor.self), depth: depth + 1)
                            } catch let error as ProtobufDecodingError where error.code != .nulCharacter {
                                throw ProtobufDecodingError(error.code, "\(String(cString: message.pointee.name)) \(fieldName) -> \(error.message)")
                            }
                        } else if field.pointee.type == PROTOBUF_C_TYPE_STRING, !depthOnly {
                            let slice = UnsafeBufferPointer(rebasing: bytes[position..<payloadEnd])
                            if String(validating: slice, as: UTF8.self) == nil {
                                throw fail(.invalidUTF8, message, "\(fieldName) is not valid UTF-8")
                            }
                            if let zero = slice.firstIndex(of: 0) {
                                let fieldPath = (path + [component]).joined(separator: ".")
                                throw ProtobufDecodingError(.nulCharacter, "\(root): string field \(fieldPath) contains U+0000 (input offset "
                                                            + "\(position + zero)); protobuf-c would cut the string there, so the input is refused")
                            }
                        }
                    }
                    position = payloadEnd
                default:
                    throw fail(.wrongWireType, message, "\(fieldName) at offset \(tagOffset) has invalid wire type \(wireType)")
                }
            }
        }
    }
}
