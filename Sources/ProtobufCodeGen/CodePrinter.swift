/// Accumulates indented Swift source text.
struct CodePrinter {
    private(set) var text = ""
    private var indentation = ""

    mutating func line(_ content: String = "") {
        if content.isEmpty {
            text += "\n"
        } else {
            text += indentation + content + "\n"
        }
    }

    mutating func indent() { indentation += "    " }
    mutating func outdent() { indentation = String(indentation.dropLast(4)) }

    /// Prints `header {`, the body one level deeper, then `}`.
    mutating func block(_ header: String, _ body: (inout CodePrinter) -> Void) {
        line(header + " {")
        indent()
        body(&self)
        outdent()
        line("}")
    }

    /// Prints `header {`, the body at the same depth (Swift style for `switch` cases), then `}`.
    mutating func switchBlock(_ header: String, _ body: (inout CodePrinter) -> Void) {
        line(header + " {")
        body(&self)
        line("}")
    }

    /// Prints a proto comment as a `///` doc comment.
    mutating func docComment(_ comment: String) {
        let trimmed = comment.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix(" ") ? String($0.dropFirst()) : String($0) }
        var lines = trimmed
        while lines.last?.trimmingSpaces.isEmpty == true { lines.removeLast() }
        while lines.first?.trimmingSpaces.isEmpty == true { lines.removeFirst() }
        for entry in lines {
            line(entry.isEmpty ? "///" : "/// " + entry)
        }
    }
}

extension String {
    var trimmingSpaces: String {
        var slice = Substring(self)
        while slice.first == " " || slice.first == "\t" { slice = slice.dropFirst() }
        while slice.last == " " || slice.last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }

    /// A Swift string literal for this text.
    var swiftLiteral: String {
        var result = "\""
        for scalar in unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if scalar.value < 0x20 {
                    result += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        return result + "\""
    }
}
