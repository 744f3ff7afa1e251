import ProtobufKit

/// Splits the gateway's streamed answer into events, as its bytes arrive: Server-Sent Events
/// (`event: message` / `event: error`, `data:` lines, a blank line ends an event, `:` lines are
/// heartbeats) or NDJSON (`{"result": ...}` / `{"error": ...}` lines, blank lines heartbeats).
struct StreamEvents {
    enum Event: Equatable {
        /// A response message's JSON.
        case message([UInt8])
        /// The `google.rpc.Status` JSON that ends the stream.
        case error([UInt8])
    }

    let isSSE: Bool
    private var pending: [UInt8] = []
    private var eventType = "message"
    private var data: [UInt8] = []
    private var hasData = false

    init(isSSE: Bool) { self.isSSE = isSSE }

    /// The events completed by `bytes`.
    mutating func feed(_ bytes: [UInt8]) -> [Event] {
        pending += bytes
        var events: [Event] = []
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var line = pending[start..<newline]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            start = newline + 1
            if let event = isSSE ? sseLine(line) : ndjsonLine(line) { events.append(event) }
        }
        pending.removeFirst(start)
        return events
    }

    /// Events left when the answer ends (a last line without its newline).
    mutating func finish() -> [Event] {
        var events = feed([UInt8(ascii: "\n")])
        if isSSE, let event = sseLine([][...]) { events.append(event) }
        return events
    }

    private mutating func sseLine(_ line: ArraySlice<UInt8>) -> Event? {
        if line.isEmpty {
            defer { eventType = "message"; data = []; hasData = false }
            guard hasData else { return nil }
            return eventType == "error" ? .error(data) : .message(data)
        }
        if line.first == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":")) ?? line.endIndex
        let field = String(decoding: line[..<colon], as: UTF8.self)
        var value = colon < line.endIndex ? line[(colon + 1)...] : []
        if value.first == UInt8(ascii: " ") { value = value.dropFirst() }
        switch field {
        case "event": eventType = String(decoding: value, as: UTF8.self)
        case "data":
            if hasData { data.append(UInt8(ascii: "\n")) }
            data += value
            hasData = true
        default: break
        }
        return nil
    }

    private func ndjsonLine(_ line: ArraySlice<UInt8>) -> Event? {
        guard !line.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) else { return nil }
        guard case .object(let members)? = try? JSONParser.parse(Array(line)), let member = members.first else {
            return .error(Array(#"{"code":13,"message":"the gateway sent a line that is not JSON"}"#.utf8))
        }
        var writer = JSONWriter()
        writer.value(member.value)
        return member.key == "error" ? .error(writer.bytes) : .message(writer.bytes)
    }
}
