import ProtobufKit

/// What `dronectl contract verify` prints and writes: a summary for people (one line per failed
/// check, a count per service) and JUnit XML for CI (a test suite per service, a test case per
/// check).
public enum ContractReport {
    public static func summary(_ checks: [ContractVerifier.Check], server: String) -> String {
        var lines: [String] = []
        let services = orderedServices(checks)
        for service in services {
            let mine = checks.filter { $0.service == service }
            let failed = mine.filter { $0.failure != nil }
            let skipped = mine.filter { $0.skipped != nil }
            let methods = Set(mine.map(\.method).filter { !$0.isEmpty }).count
            let mark = failed.isEmpty ? "✔" : "✘"
            lines.append("\(mark) \(service): \(mine.count - failed.count - skipped.count) of \(mine.count) checks passed, \(methods) methods"
                         + (skipped.isEmpty ? "" : ", \(skipped.count) skipped"))
            for check in failed { lines.append("    ✘ \(check.method.isEmpty ? "" : check.method + ": ")\(check.name)\n        \(check.failure!)") }
            for check in skipped { lines.append("    - \(check.name): skipped, \(check.skipped!)") }
        }
        let failed = checks.filter { $0.failure != nil }.count
        let passed = checks.count - failed - checks.filter { $0.skipped != nil }.count
        lines.append(failed == 0
            ? "contract verify \(server): all \(passed) checks passed (\(services.count) services)"
            : "contract verify \(server): \(failed) of \(checks.count) checks FAILED (\(services.count) services)")
        return lines.joined(separator: "\n") + "\n"
    }

    static func orderedServices(_ checks: [ContractVerifier.Check]) -> [String] {
        var seen = Set<String>()
        return checks.map(\.service).filter { seen.insert($0).inserted }
    }

    public static func junit(_ checks: [ContractVerifier.Check], server: String) -> String {
        var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        let failures = checks.filter { $0.failure != nil }.count
        xml += "<testsuites name=\"contract verify \(escape(server))\" tests=\"\(checks.count)\" failures=\"\(failures)\">\n"
        for service in orderedServices(checks) {
            let mine = checks.filter { $0.service == service }
            let time = mine.map(\.seconds).reduce(0, +)
            xml += "  <testsuite name=\"\(escape(service))\" tests=\"\(mine.count)\" failures=\"\(mine.filter { $0.failure != nil }.count)\""
                + " skipped=\"\(mine.filter { $0.skipped != nil }.count)\" errors=\"0\" time=\"\(format(time))\">\n"
            for check in mine {
                let classname = check.method.isEmpty ? service : "\(service)/\(check.method)"
                xml += "    <testcase classname=\"\(escape(classname))\" name=\"\(escape(check.name))\" time=\"\(format(check.seconds))\""
                if let failure = check.failure {
                    xml += ">\n      <failure message=\"\(escape(failure))\">\(escape(failure))</failure>\n    </testcase>\n"
                } else if let skipped = check.skipped {
                    xml += ">\n      <skipped message=\"\(escape(skipped))\"/>\n    </testcase>\n"
                } else {
                    xml += "/>\n"
                }
            }
            xml += "  </testsuite>\n"
        }
        return xml + "</testsuites>\n"
    }

    static func format(_ seconds: Double) -> String {
        let milliseconds = Int((seconds * 1000).rounded())
        return "\(milliseconds / 1000).\(String(repeating: "0", count: 3 - String(milliseconds % 1000).count))\(milliseconds % 1000)"
    }

    static func escape(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "\n": result += "&#10;"
            default:
                // XML 1.0 has no place for most control characters.
                if scalar.value < 0x20 && scalar != "\t" { result += "?" } else { result.unicodeScalars.append(scalar) }
            }
        }
        return result
    }
}
