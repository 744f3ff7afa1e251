#if canImport(Glibc)
import Glibc
#endif
import DynamicProtobuf
import ProtobufCodeGen
import ProtobufKit
import RPC

/// `dronectl contract verify`: checks a running server (ours or anyone's) against the contract
/// in proto/, for every RPC of every contract service it offers (see docs/contract-tests.md,
/// "Provider verification"):
///   1. the example scenarios (proto/fabrikam/dronedelivery/examples/*.json), step by step, each
///      with the status it expects (OK by default) and, for a stream, how many responses at least;
///   2. for every method no example called with success, a request built from the field rules;
///   3. for every field rule of the request type, a request that breaks it: the server must
///      answer INVALID_ARGUMENT with a google.rpc.BadRequest naming the field;
///   4. on every call: each response decodes as the method's output type and obeys its field
///      rules, a unary call has exactly one response, and a status other than OK is one the
///      method declares (proto/fabrikam/dronedelivery/statuses.json).
/// The contract is the descriptors and generated types compiled into dronectl; the server's
/// reflection only says which services it offers (or `--service`).
public struct ContractVerifier: Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// The contract: generated files (their descriptors carry the field rules).
        public var files: [ProtoFileMetadata]
        /// Services to verify; empty: every contract service the server's reflection lists.
        public var services: [String] = []
        /// The example scenarios (files or directories of *.json).
        public var examples: [String] = []
        /// The declared statuses (JSON, see `DeclaredStatuses`).
        public var statuses: String
        /// Bound of every call.
        public var timeout: Duration = .seconds(10)
        /// Responses read from a stream before the verification stops it (it may never end).
        public var maxStreamResponses = 3
        public var metadata = Metadata()

        public init(host: String, port: Int, files: [ProtoFileMetadata], statuses: String) {
            self.host = host
            self.port = port
            self.files = files
            self.statuses = statuses
        }
    }

    /// One check: what was checked, and why it failed (nil: passed; `skipped`: not run).
    public struct Check: Sendable {
        public var service: String
        public var method: String
        public var name: String
        public var failure: String?
        public var skipped: String?
        public var seconds: Double
    }

    public let configuration: Configuration
    let pool: DescriptorPool
    let registry: TypeRegistry
    let rules: ContractRules

    public init(_ configuration: Configuration) throws {
        self.configuration = configuration
        pool = try DescriptorPool(generated: configuration.files + ProtobufKit.wellKnownFiles)
        registry = TypeRegistry(files: configuration.files).adding(TypeRegistry.wellKnownTypesList)
        rules = ContractRules(pool: pool)
    }

    /// Runs every check; the results in order.
    public func run() async throws -> [Check] {
        let declared = try DeclaredStatuses(path: configuration.statuses)
        let scenarios = try ExampleScenario.load(configuration.examples)
        let client = RPCClient(host: configuration.host, port: configuration.port, options: .defaults {
            $0.validatesRequests = false  // the invalid requests must reach the server
            $0.connectTimeout = .seconds(5)
        })
        do {
            let checks = try await run(client: client, declared: declared, scenarios: scenarios)
            await client.close()
            return checks
        } catch {
            await client.close()
            throw error
        }
    }

    func run(client: RPCClient, declared: DeclaredStatuses, scenarios: [ExampleScenario]) async throws -> [Check] {
        let offered = try await services(client)
        var checks: [Check] = []
        var covered = Set<String>()  // methods an example called with success
        var bases: [String: JSONValue] = [:]  // a valid request per method, to derive the invalid ones from
        let run = Run(verifier: self, client: client, declared: declared)

        for scenario in scenarios {
            // A scenario runs against a server that offers every service it calls (the others
            // are for another server of the system).
            if scenario.services.contains(where: { !offered.contains($0) }) { continue }
            var variables: [String: String] = [:]
            for (index, step) in scenario.steps.enumerated() {
                let name = "example \(scenario.name), step \(index + 1): \(step.method)"
                let (service, method) = try resolve(step.call)
                var requests: [JSONValue] = []
                do {
                    requests = try step.requests.map { try substitute($0, variables) }
                } catch {
                    checks.append(Check(service: service.fullName, method: method.name, name: name, failure: "\(error)", seconds: 0))
                    break
                }
                let clock = ContinuousClock.now
                let outcome = await run.call(method, requests: requests)
                var failure = run.problems(of: outcome, method: method, expecting: step.expect, minResponses: step.minResponses)
                if failure == nil, let response = outcome.responses.first {
                    for (variable, path) in step.save {
                        if let value = Self.lookup(path, in: response) { variables[variable] = value } else {
                            failure = "the response has no \(path) to save as ${\(variable)}"
                        }
                    }
                }
                checks.append(Check(service: service.fullName, method: method.name, name: name, failure: failure, seconds: seconds(since: clock)))
                if failure != nil { break }  // the later steps depend on this one
                if step.expect == .ok {
                    covered.insert(step.call)
                    if bases[step.call] == nil, let first = requests.first { bases[step.call] = first }
                }
            }
        }

        for serviceName in offered.sorted() {
            guard let (service, _) = pool.services[serviceName] else { continue }
            for method in service.methods {
                let path = "\(service.fullName)/\(method.name)"
                if declared.methods[path] == nil {
                    checks.append(Check(service: service.fullName, method: method.name, name: "declares its statuses", failure:
                        "\(path) is not in \(configuration.statuses): declare the statuses it may answer", seconds: 0))
                }
                var base = bases[path]
                if !covered.contains(path) {
                    let built = rules.validMessage(method.inputType)
                    let clock = ContinuousClock.now
                    var failure: String?
                    let local = run.violations(of: built, type: method.inputType)
                    if let local, !local.isEmpty {
                        failure = "could not build a valid request from the field rules (\(local.map(\.description).joined(separator: "; "))): add an example"
                    } else {
                        let outcome = await run.call(method, requests: [built])
                        failure = run.problems(of: outcome, method: method, expecting: nil, minResponses: 0)
                        base = base ?? built
                    }
                    checks.append(Check(service: service.fullName, method: method.name, name: "a request built from the field rules",
                                        failure: failure, seconds: seconds(since: clock)))
                }
                guard let base else { continue }
                for mutation in rules.mutations(of: base, type: method.inputType) {
                    // Only a request the contract's own checks find invalid is sent, and the
                    // server must name the fields they name.
                    guard let expected = run.violations(of: mutation.request, type: method.inputType), !expected.isEmpty else { continue }
                    let clock = ContinuousClock.now
                    let outcome = await run.call(method, requests: [mutation.request])
                    var failure = run.problems(of: outcome, method: method, expecting: .invalidArgument, minResponses: 0)
                    if failure == nil {
                        let named = Set(outcome.fieldViolations)
                        let fields = Set(expected.map(\.field))
                        let unnamed = fields.subtracting(named)
                        if !unnamed.isEmpty {
                            failure = "INVALID_ARGUMENT, but its google.rpc.BadRequest does not name \(unnamed.sorted().map { "\"\($0)\"" }.joined(separator: ", "))"
                                + " (it names: \(named.isEmpty ? "nothing" : named.sorted().joined(separator: ", ")))"
                        }
                    }
                    checks.append(Check(service: service.fullName, method: method.name, name: "refuses \(mutation.name)",
                                        failure: failure, seconds: seconds(since: clock)))
                }
            }
        }
        return checks
    }

    func seconds(since start: ContinuousClock.Instant) -> Double {
        let elapsed = ContinuousClock.now - start
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    func resolve(_ call: String) throws -> (ProtoService, ProtoMethod) {
        do { return try pool.method(call) } catch { throw UsageError("examples: \(error)") }
    }

    /// The contract services to verify: `--service`, else those the server's reflection lists
    /// (gRPC's own health and reflection services are infrastructure, not the contract).
    func services(_ client: RPCClient) async throws -> Set<String> {
        if !configuration.services.isEmpty {
            for name in configuration.services where pool.services[name] == nil {
                throw UsageError("--service \(name) is not a service of the contract (known: \(contractServices.sorted().joined(separator: ", ")))")
            }
            return Set(configuration.services)
        }
        let listed: [String]
        do {
            listed = try await ReflectionClient(client: client, options: CallOptions(timeout: configuration.timeout, metadata: configuration.metadata)).listServices()
        } catch {
            throw ToolError("could not list the server's services by reflection (\(error)); name them with --service")
        }
        return Set(listed).intersection(contractServices)
    }

    var contractServices: Set<String> { Set(pool.services.keys.filter { !$0.hasPrefix("grpc.") }) }

    /// `${name}` in any string of the tree replaced by the saved value.
    func substitute(_ value: JSONValue, _ variables: [String: String]) throws -> JSONValue {
        switch value {
        case .string(let text):
            var result = ""
            var rest = Substring(text)
            while let dollar = rest.firstIndex(of: "$"), rest[rest.index(after: dollar)...].hasPrefix("{"),
                  let end = rest[dollar...].firstIndex(of: "}") {
                let name = String(rest[rest.index(dollar, offsetBy: 2)..<end])
                guard let replacement = variables[name] else { throw ToolError("${\(name)} was not saved by an earlier step") }
                result += rest[..<dollar] + replacement
                rest = rest[rest.index(after: end)...]
            }
            return .string(result + rest)
        case .array(let elements): return .array(try elements.map { try substitute($0, variables) })
        case .object(let members): return .object(try members.map { JSONMember($0.key, try substitute($0.value, variables)) })
        default: return value
        }
    }

    /// The scalar at a dotted path of JSON names (`delivery.id`), as text.
    static func lookup(_ path: String, in value: JSONValue) -> String? {
        var current = value
        for part in path.split(separator: ".") {
            guard case .object(let members) = current, let next = members.first(where: { $0.key == part })?.value else { return nil }
            current = next
        }
        switch current {
        case .string(let text): return text
        case .integer(let number): return String(number)
        case .number(let number): return String(number)
        case .bool(let flag): return String(flag)
        default: return nil
        }
    }
}

/// The calls of one verification run.
struct Run: Sendable {
    let verifier: ContractVerifier
    let client: RPCClient
    let declared: DeclaredStatuses

    struct Outcome {
        var code: RPCError.Code = .ok
        var message = ""
        /// The responses as JSON (those that decoded).
        var responses: [JSONValue] = []
        /// Problems with responses: not decodable, rules broken.
        var responseProblems: [String] = []
        var fieldViolations: [String] = []
        /// The verification stopped reading (a stream with more to say).
        var stoppedReading = false
        /// Could not even encode the request.
        var requestProblem: String?
        /// Responses received, readable or not.
        var rawCount = 0
    }

    /// The rules `value` breaks as a `type` (its generated type's checks), as `path: message`;
    /// nil when it does not even decode.
    func violations(of value: JSONValue, type: String) -> [ValidationViolation]? {
        guard let messageType = verifier.registry.type(named: type),
              let message = try? messageType.init(jsonValue: value, options: JSONDecodingOptions.defaults { $0.typeRegistry = verifier.registry })
        else { return nil }
        return message.validationViolations()
    }

    /// Sends `requests` (all of them, then half-closes) and reads the responses, at most
    /// `maxStreamResponses` of a stream, within the call's timeout.
    func call(_ method: ProtoMethod, requests: [JSONValue]) async -> Outcome {
        guard let service = verifier.pool.services.values.first(where: { $0.service.methods.contains(method) })?.service else {
            return Outcome(requestProblem: "no service of the contract has \(method.name)")
        }
        var outcome = Outcome()
        let options = JSONDecodingOptions.defaults { $0.typeRegistry = verifier.registry }
        var encoded: [RawMessage] = []
        for request in requests {
            do {
                guard let type = verifier.registry.type(named: method.inputType) else { throw ToolError("no generated type \(method.inputType)") }
                encoded.append(try RawMessage(encoded: try type.init(jsonValue: request, options: options).serializedBytes()))
            } catch {
                outcome.requestProblem = "the request is not a \(method.inputType): \(error)"
                return outcome
            }
        }
        let descriptor = verifier.pool.methodDescriptor(service: service, method: method)
        let limit = method.serverStreaming ? verifier.configuration.maxStreamResponses : 2
        let callOptions = CallOptions(timeout: verifier.configuration.timeout, metadata: verifier.configuration.metadata)
        @Sendable func collect(_ responses: ResponseStream<RawMessage>) async throws -> ([RawMessage], Bool) {
            var received: [RawMessage] = []
            var iterator = responses.makeAsyncIterator()
            while let response = try await iterator.next() {
                received.append(response)
                if received.count >= limit { return (received, true) }
            }
            return (received, false)
        }
        do {
            let (raw, stopped): ([RawMessage], Bool)
            if method.clientStreaming {
                (raw, stopped) = try await client.bidirectional(descriptor, requestType: RawMessage.self, responseType: RawMessage.self,
                                                                options: callOptions) { writer, responses in
                    // A server that ends the call early refuses the rest: what it answered counts.
                    do {
                        for message in encoded { try await writer.write(message) }
                        writer.finish()
                    } catch {}
                    return try await collect(responses)
                }
            } else {
                (raw, stopped) = try await client.serverStreaming(descriptor, encoded[0], responseType: RawMessage.self, options: callOptions) { responses in
                    try await collect(responses)
                }
            }
            outcome.rawCount = raw.count
            outcome.stoppedReading = stopped && method.serverStreaming
            read(raw, method: method, into: &outcome)
        } catch let error as RPCError {
            outcome.code = error.code
            outcome.message = error.message
            if let badRequest = try? error.detail(Google.Rpc.BadRequest.self) { outcome.fieldViolations = badRequest.fieldViolations.map(\.field) }
        } catch {
            outcome.code = .unknown
            outcome.message = "\(error)"
        }
        return outcome
    }

    func serviceName(_ method: ProtoMethod) -> String {
        verifier.pool.services.values.first { $0.service.methods.contains(method) }?.service.fullName ?? ""
    }

    /// Each response decodes as the output type and obeys its field rules.
    func read(_ responses: [RawMessage], method: ProtoMethod, into outcome: inout Outcome) {
        guard let type = verifier.registry.type(named: method.outputType) else {
            outcome.responseProblems.append("no generated type \(method.outputType) to read the responses")
            return
        }
        for (index, raw) in responses.enumerated() {
            let which = method.serverStreaming ? "response \(index + 1)" : "the response"
            do {
                let message = try type.init(serializedBytes: raw.encoded)
                let broken = message.validationViolations()
                if !broken.isEmpty {
                    outcome.responseProblems.append("\(which) breaks the field rules of \(method.outputType): \(broken.map(\.description).joined(separator: "; "))")
                }
                let json = try message.jsonUTF8Bytes(options: .defaults { $0.typeRegistry = verifier.registry })
                outcome.responses.append(try JSONParser.parse(json))
            } catch {
                outcome.responseProblems.append("\(which) does not decode as \(method.outputType): \(error)")
            }
        }
    }

    /// Why a call's outcome breaks the contract, or nil. `expecting`: the status the call must
    /// end with (nil: OK or any status the method declares).
    func problems(of outcome: Outcome, method: ProtoMethod, expecting: RPCError.Code?, minResponses: Int) -> String? {
        if let problem = outcome.requestProblem { return problem }
        var problems = outcome.responseProblems
        let path = "\(serviceName(method))/\(method.name)"
        let status = outcome.code == .ok ? "OK" : "\(outcome.code)" + (outcome.message.isEmpty ? "" : " (\(outcome.message))")
        if outcome.code != .ok, !declared.allows(outcome.code, path) {
            problems.append("answered \(status), a status \(path) does not declare (declared: \(declared.codes(path).map(\.description).joined(separator: ", ")))")
        } else if let expecting, outcome.code != expecting {
            problems.append("expected \(expecting), got \(status)")
        }
        if outcome.code == .ok {
            if !method.serverStreaming && outcome.rawCount != 1 {
                problems.append("a call with one response ended OK after \(outcome.rawCount) responses")
            }
            if method.serverStreaming && !outcome.stoppedReading && outcome.responses.count < minResponses {
                problems.append("the stream ended (OK) after \(outcome.responses.count) responses, the example expects at least \(minResponses)")
            }
        } else if method.serverStreaming && outcome.responses.count < minResponses && expecting == .ok {
            problems.append("the stream ended after \(outcome.responses.count) responses, the example expects at least \(minResponses)")
        }
        return problems.isEmpty ? nil : problems.joined(separator: "; ")
    }
}

/// The statuses each method may answer besides OK: a JSON file beside the protos
/// (proto/fabrikam/dronedelivery/statuses.json):
///
/// ```json
/// {"every_method": ["INVALID_ARGUMENT", "DEADLINE_EXCEEDED"],
///  "methods": {"fabrikam.dronedelivery.accounts.v1.AccountsService/GetAccount": ["NOT_FOUND"]}}
/// ```
struct DeclaredStatuses: Sendable {
    var everyMethod: Set<RPCError.Code> = []
    var methods: [String: Set<RPCError.Code>] = [:]

    init(path: String) throws {
        let document: JSONValue
        do { document = try JSONParser.parse(try FileReader().read(path)) } catch let error as ToolError { throw UsageError("--statuses: \(error.description)") }
        catch { throw UsageError("--statuses \(path): not JSON (\(error))") }
        guard case .object(let members) = document else { throw UsageError("--statuses \(path): not a JSON object") }
        for member in members {
            switch member.key {
            case "every_method": everyMethod = try Self.codes(member.value, path)
            case "methods":
                guard case .object(let methods) = member.value else { throw UsageError("--statuses \(path): methods is not an object") }
                for method in methods { self.methods[method.key] = try Self.codes(method.value, path) }
            default: continue  // comments
            }
        }
    }

    static func codes(_ value: JSONValue, _ path: String) throws -> Set<RPCError.Code> {
        guard case .array(let names) = value else { throw UsageError("--statuses \(path): a list of status names was expected") }
        return Set(try names.map { name in
            guard case .string(let text) = name, let code = StatusNames.code(text) else {
                throw UsageError("--statuses \(path): \(name) is not a gRPC status name (NOT_FOUND, ...)")
            }
            return code
        })
    }

    func codes(_ method: String) -> [RPCError.Code] {
        everyMethod.union(methods[method] ?? []).sorted { $0.rawValue < $1.rawValue }
    }

    func allows(_ code: RPCError.Code, _ method: String) -> Bool {
        code == .ok || everyMethod.contains(code) || methods[method]?.contains(code) == true
    }
}

enum StatusNames {
    static let all = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                      "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                      "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"]
    static func code(_ name: String) -> RPCError.Code? { all.firstIndex(of: name).map { RPCError.Code(rawValue: $0) } }
}

/// An ordered example scenario: calls whose requests may use values saved from earlier responses.
///
/// ```json
/// {"scenario": "an account and its user",
///  "steps": [
///    {"call": "fabrikam.dronedelivery.accounts.v1.AccountsService/RegisterAccount",
///     "request": {"displayName": "Contract test"}, "save": {"account": "account.accountId"}},
///    {"call": "fabrikam.dronedelivery.accounts.v1.AccountsService/GetAccount", "request": {"accountId": "${account}"}}]}
/// ```
/// A step has `request` (one) or `requests` (a client stream); `expect` (a status name, OK by
/// default); `min_responses` (a server stream must send at least that many); `save` (variable:
/// dotted JSON path in the first response).
struct ExampleScenario: Sendable {
    struct Step: Sendable {
        var call: String
        var method: String
        var requests: [JSONValue]
        var expect: RPCError.Code = .ok
        var minResponses = 0
        var save: [(String, String)] = []
    }

    var name: String
    var steps: [Step]
    var services: [String] { Array(Set(steps.map { String($0.call.split(separator: "/").first ?? "") })).sorted() }

    static func load(_ paths: [String]) throws -> [ExampleScenario] {
        var files: [String] = []
        for path in paths {
            if let entries = directoryEntries(path) {
                files += entries.filter { $0.hasSuffix(".json") }.sorted().map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        return try files.map { try parse($0) }
    }

    /// The names in a directory, nil when `path` is not one.
    static func directoryEntries(_ path: String) -> [String]? {
        guard let directory = opendir(path) else { return nil }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafePointer(to: entry.pointee.d_name) { String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self)) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func parse(_ file: String) throws -> ExampleScenario {
        func bad(_ why: String) -> UsageError { UsageError("examples: \(file): \(why)") }
        let document: JSONValue
        do { document = try JSONParser.parse(try FileReader().read(file)) } catch { throw bad("\(error)") }
        guard case .object(let members) = document else { throw bad("not a JSON object") }
        var scenario = ExampleScenario(name: file.split(separator: "/").last.map(String.init) ?? file, steps: [])
        for member in members {
            switch member.key {
            case "scenario": if case .string(let name) = member.value { scenario.name = name }
            case "steps":
                guard case .array(let steps) = member.value else { throw bad("steps is not a list") }
                for step in steps {
                    guard case .object(let fields) = step else { throw bad("a step is not an object") }
                    var parsed = Step(call: "", method: "", requests: [])
                    for field in fields {
                        switch (field.key, field.value) {
                        case ("call", .string(let call)):
                            parsed.call = call
                            parsed.method = String(call.split(separator: "/").last ?? "")
                        case ("request", let request): parsed.requests = [request]
                        case ("requests", .array(let requests)): parsed.requests = requests
                        case ("expect", .string(let name)):
                            guard let code = StatusNames.code(name) else { throw bad("expect: \(name) is not a status name") }
                            parsed.expect = code
                        case ("min_responses", .integer(let count)): parsed.minResponses = Int(count)
                        case ("save", .object(let saves)):
                            for save in saves { if case .string(let path) = save.value { parsed.save.append((save.key, path)) } }
                        case ("comment", _): continue
                        default: throw bad("unknown step field \(field.key)")
                        }
                    }
                    guard !parsed.call.isEmpty, !parsed.requests.isEmpty else { throw bad("a step needs call and request(s)") }
                    scenario.steps.append(parsed)
                }
            default: continue
            }
        }
        return scenario
    }
}
