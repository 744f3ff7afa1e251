// google.protobuf.FieldMask: JSON form is one string of lowerCamelCase paths joined by commas:
// "user.displayName,photo".

extension Google.Protobuf.FieldMask {
    public init(paths: [String]) {
        self.init()
        self.paths = paths
    }

    public func _writeJSON(to writer: inout JSONWriter) throws {
        var converted: [String] = []
        for path in paths {
            // A path that cannot round-trip (upper case, or "_" not followed by a lower case letter)
            // has no JSON form.
            let camel = try path.split(separator: ".", omittingEmptySubsequences: false).map { component -> String in
                var result = ""
                var upperNext = false
                for character in component {
                    if character == "_" {
                        guard !upperNext else { throw JSONEncodingError("FieldMask path \(path.debugDescription) cannot be written as JSON") }
                        upperNext = true
                    } else if character.isUppercase {
                        throw JSONEncodingError("FieldMask path \(path.debugDescription) cannot be written as JSON")
                    } else if upperNext {
                        guard character.isLowercase else { throw JSONEncodingError("FieldMask path \(path.debugDescription) cannot be written as JSON") }
                        result += character.uppercased()
                        upperNext = false
                    } else {
                        result.append(character)
                    }
                }
                guard !upperNext else { throw JSONEncodingError("FieldMask path \(path.debugDescription) cannot be written as JSON") }
                return result
            }
            converted.append(camel.joined(separator: "."))
        }
        writer.string(converted.joined(separator: ","))
    }

    public init(_jsonScanner scanner: inout JSONScanner) throws {
        guard scanner.peek() == UInt8(ascii: "\"") else {
            throw scanner.mismatch(expected: "a comma-separated field mask string")
        }
        let text = try scanner.string()
        self.init()
        if text.isEmpty { return }
        for path in text.split(separator: ",", omittingEmptySubsequences: false) {
            var snake = ""
            for character in path {
                if character == "_" { throw JSONDecodingError("field mask path \(String(path).debugDescription) must be lowerCamelCase") }
                if character.isUppercase {
                    snake += "_" + character.lowercased()
                } else {
                    snake.append(character)
                }
            }
            paths.append(snake)
        }
    }
}
