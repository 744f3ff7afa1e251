#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import ProtobufKit
import Synchronization

/// One call a client made, as its consumer relied on it: the request and response messages
/// (protobuf bytes, in order) and how it ended. The raw material of consumer contracts
/// (docs/contract-tests.md, "Consumer contracts"): tools/contract/consumer_contracts.py turns
/// recordings into the contract files in contracts/consumers/.
public struct RecordedCall: Sendable {
    /// `/package.Service/Method`.
    public var method: String
    /// When the call started, in nanoseconds since 1970 (orders calls across processes).
    public var startedAt: Int64
    public var requests: [[UInt8]] = []
    public var responses: [[UInt8]] = []
    public var code: RPCError.Code = .ok
    public var message = ""
    /// The status came from this side (a deadline, a cancellation, no connection), not from the
    /// server: no contract of the provider.
    public var local = false

    public init(method: String, startedAt: Int64) {
        self.method = method
        self.startedAt = startedAt
    }
}

/// Takes every call a client finished (`RPCClient.Options.recorder`).
public protocol CallRecorder: Sendable {
    func record(_ call: RecordedCall)
}

/// The call being recorded, from its start through the interceptors to its end. The messages
/// arrive from the caller's task and from the reading side; a lock keeps them in order.
final class CallRecording: Sendable {
    @TaskLocal static var current: CallRecording?

    private let call: Mutex<RecordedCall>

    init(method: String) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        call = Mutex(RecordedCall(method: method, startedAt: Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)))
    }

    /// The one request of a unary or server-streaming call (sent again after a refusal: still one).
    func setOnlyRequest(_ message: some Message) {
        guard let bytes = try? message.serializedBytes() else { return }
        call.withLock { $0.requests = [bytes] }
    }

    func addRequest(_ message: some Message) {
        guard let bytes = try? message.serializedBytes() else { return }
        call.withLock { $0.requests.append(bytes) }
    }

    func addResponse(_ buffer: ByteBuffer) {
        let bytes = buffer.withUnsafeReadableBytes { Array($0) }
        call.withLock { $0.responses.append(bytes) }
    }

    func finished(_ error: (any Error)?) -> RecordedCall {
        call.withLock { call in
            switch error {
            case nil: break
            case let status as RPCError:
                call.code = status.code
                call.message = status.message
                call.local = status.origin == .local
            case is CancellationError:
                call.code = .cancelled
                call.local = true
            default:  // the caller's own body threw: the call was cut short here
                call.code = .cancelled
                call.message = "\(error!)"
                call.local = true
            }
            return call
        }
    }
}

/// Appends each call as one JSON line to `<directory>/<consumer>.<pid>.jsonl` (one `write` per
/// line, so a process killed mid-run leaves whole lines). Turned on for every client of a
/// process by `FABRIKAM_CONTRACT_RECORD=<directory>`; the consumer's name is
/// `FABRIKAM_CONTRACT_CONSUMER`, else the executable's name without `-service`.
public final class FileCallRecorder: CallRecorder {
    let descriptor: Int32
    let consumer: String

    /// The recorder `FABRIKAM_CONTRACT_RECORD` asks for (nil when unset), made once per process.
    public static let environment: FileCallRecorder? = {
        guard let directory = getenv("FABRIKAM_CONTRACT_RECORD").map({ String(cString: $0) }), !directory.isEmpty else { return nil }
        let consumer = getenv("FABRIKAM_CONTRACT_CONSUMER").map { String(cString: $0) } ?? executableName()
        return FileCallRecorder(directory: directory, consumer: consumer)
    }()

    public init?(directory: String, consumer: String) {
        mkdir(directory, 0o755)
        let path = "\(directory)/\(consumer).\(getpid()).jsonl"
        let descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        self.consumer = consumer
    }

    deinit { close(descriptor) }

    public func record(_ call: RecordedCall) {
        var line = "{\"consumer\":\(Self.quoted(consumer)),\"method\":\(Self.quoted(call.method)),\"started_ns\":\(call.startedAt)"
        line += ",\"requests\":[\(call.requests.map { "\"\(Self.hex($0))\"" }.joined(separator: ","))]"
        line += ",\"responses\":[\(call.responses.map { "\"\(Self.hex($0))\"" }.joined(separator: ","))]"
        line += ",\"code\":\(call.code.rawValue),\"message\":\(Self.quoted(call.message)),\"local\":\(call.local)}\n"
        var bytes = Array(line.utf8)
        _ = bytes.withUnsafeMutableBytes { write(descriptor, $0.baseAddress, $0.count) }
    }

    static func executableName() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        let path = count > 0 ? String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "unknown"
        var name = String(path.split(separator: "/").last ?? "unknown")
        if name.hasSuffix("-service") { name.removeLast("-service".count) }
        return name
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for byte in bytes { out.append(digits[Int(byte >> 4)]); out.append(digits[Int(byte & 15)]) }
        return String(decoding: out, as: UTF8.self)
    }

    /// A JSON string literal (ProtobufKit's JSON writer does the escaping).
    static func quoted(_ text: String) -> String {
        var writer = JSONWriter()
        writer.string(text)
        return String(decoding: writer.bytes, as: UTF8.self)
    }
}
