import ProtobufKit

/// One HTTP binding of an RPC method, from its `google.api.http` rule. A class: a route is
/// handed around on every request, and copying a struct of this many fields cost more.
public final class Route: Sendable {
    public let httpMethod: String
    public let template: PathTemplate
    public let method: MethodDescriptor
    /// `*` (the whole body is the request), a field name (the body is that field), or "" (no body).
    public let body: String
    /// A response field to send instead of the whole response ("" for the whole response).
    public let responseBody: String
    public let input: any JSONMessage.Type
    public let output: any JSONMessage.Type
    /// The route's position in its table (set once the table is sorted), for per-route data
    /// the gateway works out once instead of per request.
    public let id: Int
    /// `METHOD /template`, as the configuration names routes.
    public var name: String { "\(httpMethod) \(template)" }

    init(httpMethod: String, template: PathTemplate, method: MethodDescriptor, body: String, responseBody: String,
         input: any JSONMessage.Type, output: any JSONMessage.Type, id: Int = 0) {
        self.httpMethod = httpMethod
        self.template = template
        self.method = method
        self.body = body
        self.responseBody = responseBody
        self.input = input
        self.output = output
        self.id = id
    }

    func numbered(_ id: Int) -> Route {
        Route(httpMethod: httpMethod, template: template, method: method, body: body, responseBody: responseBody, input: input, output: output, id: id)
    }
}

/// What a request matched.
public enum RouteMatch: Sendable {
    case found(Route, variables: [String: String])
    /// The path exists, but not for this HTTP method.
    case methodNotAllowed(allowed: [String])
    case notFound
    /// The route of this method and path, but the path's value for `field` does not decode
    /// (a malformed %XX escape or bytes that are not UTF-8): a bad request, not a missing route.
    case undecodable(Route, field: String, raw: String)
}

/// Every route of the services' `google.api.http` annotations, matched in a fixed order:
/// templates with a `:verb` first, then more literal segments first, so `/v1/deliveries/{id}:track`
/// wins over `/v1/deliveries/{id}`.
public struct RouteTable: Sendable {
    public private(set) var routes: [Route] = []
    /// Indexes into `routes` by the shape of path a template can match (its `:verb` and number
    /// of segments), so a request is tried only against templates of its own shape; templates
    /// ending in `**` match several lengths and are always tried.
    private var byShape: [Shape: [Int]] = [:]
    private var anyLength: [Int] = []

    private struct Shape: Hashable {
        var verb: Substring?
        var count: Int
    }

    public struct BuildError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Routes for every annotated method of `files` whose service is in `services` (all when nil).
    public init(files: [ProtoFileMetadata], services: Set<String>? = nil) throws {
        var types: [String: any JSONMessage.Type] = [:]
        for file in files {
            for type in file.messageTypes {
                if let json = type as? any JSONMessage.Type { types[type.protoMessageName] = json }
            }
        }
        for file in files {
            for service in file.services where services?.contains(service.fullName) ?? true {
                for method in service.methods {
                    guard let rule = method.httpRule, !method.clientStreaming else { continue }
                    guard let input = types[method.inputType], let output = types[method.outputType] else {
                        throw BuildError(description: "no generated type for \(method.inputType) or \(method.outputType)")
                    }
                    for binding in [rule] + rule.additionalBindings {
                        let template: PathTemplate
                        do { template = try PathTemplate(binding.pattern) } catch { throw BuildError(description: "\(method.path): \(error)") }
                        routes.append(Route(httpMethod: binding.method.uppercased(), template: template, method: method,
                                            body: binding.body, responseBody: binding.responseBody.isEmpty ? rule.responseBody : binding.responseBody,
                                            input: input, output: output))
                    }
                }
            }
        }
        routes.sort { a, b in
            let verbA = a.template.verb != nil, verbB = b.template.verb != nil
            if verbA != verbB { return verbA }
            let literalsA = a.template.segments.filter { if case .literal = $0 { true } else { false } }.count
            let literalsB = b.template.segments.filter { if case .literal = $0 { true } else { false } }.count
            if literalsA != literalsB { return literalsA > literalsB }
            return a.template.description < b.template.description
        }
        routes = routes.enumerated().map { $0.element.numbered($0.offset) }
        for (index, route) in routes.enumerated() {
            if route.template.segments.last == .rest {
                anyLength.append(index)
            } else {
                byShape[Shape(verb: route.template.verb.map { Substring($0) }, count: route.template.segments.count), default: []].append(index)
            }
        }
    }

    public func match(method: String, path: String) -> RouteMatch {
        let path = RequestPath(path)
        guard path.isValid else { return .notFound }
        let withVerb = path.verb.flatMap { byShape[Shape(verb: $0, count: path.partsWithoutVerb.count)] } ?? []
        let withoutVerb = byShape[Shape(verb: nil, count: path.parts.count)] ?? []
        var allowed: [String] = []
        var verbRouteMatched = false
        // Candidates in the table's order: verb routes come first by construction (the table
        // sorts them first); only `**` templates, when there are any, need merging in.
        let lists = anyLength.isEmpty ? [withVerb, withoutVerb] : [(anyLength + withVerb + withoutVerb).sorted()]
        for list in lists {
            for index in list {
                let route = routes[index]
                // "/v1/deliveries/x:confirm" is the confirm route's path even for a GET: it must not
                // fall through to "/v1/deliveries/{delivery_id}" with the id "x:confirm".
                if verbRouteMatched && route.template.verb == nil { break }
                let variables: [String: String]
                switch route.template.matchResult(path) {
                case .noMatch: continue
                case .matched(let bound): variables = bound
                case .undecodable(let field, let raw):
                    if route.httpMethod == method { return .undecodable(route, field: field, raw: raw) }
                    variables = [:]
                }
                if route.template.verb != nil { verbRouteMatched = true }
                if route.httpMethod == method { return .found(route, variables: variables) }
                if !allowed.contains(route.httpMethod) { allowed.append(route.httpMethod) }
            }
        }
        return allowed.isEmpty ? .notFound : .methodNotAllowed(allowed: allowed)
    }
}
