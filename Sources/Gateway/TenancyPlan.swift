/// What the gateway does with each id a public request can carry, so that a business reaches
/// only its own data. Worked out once per route from the request message's schema when the
/// gateway starts; an id-carrying field with no decision stops the gateway from starting, so a
/// field added to a .proto later cannot slip through unchecked.
///
/// Someone else's id answers as if it did not exist (404): what a payments API does, so that
/// probing ids tells nothing. The exception is a package id a new delivery would create: ids are
/// unique across businesses, so a taken one is 409 (what an id taken by anyone would be).
struct TenancyPlan: Sendable {
    /// One id-carrying field and its check. Paths are JSON names from the request's root.
    enum Rule: Sendable, Equatable {
        /// Names an account (`owner_id`, `account_id`, `owner.account_id`, `package.owner_id`):
        /// filled with the caller's account when empty; another account is 404.
        case account([String])
        /// `name` = `accounts/{account_id}`: another account is 404.
        case accountName([String])
        /// A delivery id: one of the caller's deliveries (Delivery knows it, or it waits on
        /// Ingestion's queue), else 404.
        case delivery([String])
        /// The package a new delivery carries (created or replaced by the saga): a new id or one
        /// of the caller's packages; another business's is 409.
        case packageForNewDelivery([String])
        /// The user a request acts for: filled with the key's user when the key has one, and
        /// then no other user (403); free for a key of the whole account.
        case user([String])
    }

    /// The checks, in the order of the message's fields.
    var rules: [Rule] = []
    /// Id fields the service itself confines to the account that the request names (and
    /// that a rule above fills with the caller's), as JSON paths: listed for the record and the
    /// tests.
    var scopedByService: [[String]] = []
    /// Every id-carrying field of the request, checked here or by the service.
    var idFields: [[String]] {
        rules.map { rule in
            switch rule {
            case .account(let path), .accountName(let path), .delivery(let path), .packageForNewDelivery(let path), .user(let path): path
            }
        } + scopedByService
    }
    /// The top-level `delivery_id` rule, if any: the delivery the route is about.
    var deliveryPath: [String]? {
        for case .delivery(let path) in rules where path.count == 1 { return path }
        return nil
    }

    /// No checks (a request that names nothing).
    init() {}

    struct BuildError: Error, CustomStringConvertible {
        let description: String
    }

    /// The plan for requests of `messageName` (a public route's input).
    init(messageName: String, schema: Schema) throws {
        guard let message = schema.messages[messageName] else { throw BuildError(description: "no schema for \(messageName)") }
        let isAccountsRequest = messageName.hasPrefix("fabrikam.dronedelivery.accounts.")
        try walk(message, path: [], protoPath: messageName, schema: schema, isAccountsRequest: isAccountsRequest,
                 accountNamedAbove: Self.namesAccount(message))
    }

    /// Whether a message carries an account the gateway fills (so its other ids are scoped to it).
    private static func namesAccount(_ message: Schema.MessageType) -> Bool {
        message.fields.contains { ($0.name == "owner_id" || $0.name == "account_id") && $0.kind == .string }
    }

    private mutating func walk(_ message: Schema.MessageType, path: [String], protoPath: String, schema: Schema,
                               isAccountsRequest: Bool, accountNamedAbove: Bool) throws {
        let scoped = accountNamedAbove || Self.namesAccount(message)
        for field in message.fields {
            let fieldPath = path + [field.jsonName]
            let name = "\(protoPath).\(field.name)"
            switch field.kind {
            case .message where field.typeName.hasPrefix("fabrikam.dronedelivery.") && !field.isRepeated:
                guard fieldPath.count < 4, let nested = schema.messages[field.typeName] else { continue }
                try walk(nested, path: fieldPath, protoPath: name, schema: schema, isAccountsRequest: isAccountsRequest, accountNamedAbove: scoped)
            case .string:
                switch field.name {
                case "owner_id", "account_id":
                    rules.append(.account(fieldPath))
                case "name" where isAccountsRequest && path.isEmpty:
                    rules.append(.accountName(fieldPath))
                case "delivery_id":
                    rules.append(.delivery(fieldPath))
                case "package_id" where message.fullName == "fabrikam.dronedelivery.common.v1.PackageInfo":
                    rules.append(.packageForNewDelivery(fieldPath))
                case "user_id" where message.fullName == "fabrikam.dronedelivery.common.v1.Owner":
                    rules.append(.user(fieldPath))
                case "package_id", "user_id", "key_id":
                    // The service looks these up within the account the request names.
                    guard scoped else { throw BuildError(description: "\(name) is not confined to an account the gateway fills (TenancyPlan)") }
                    scopedByService.append(fieldPath)
                case "request_id":
                    // An idempotency key: Ingestion keeps it per account, registration is public.
                    scopedByService.append(fieldPath)
                case let other where other.hasSuffix("_id") || other == "name":
                    throw BuildError(description: "\(name) names something by id, and the gateway has no tenancy rule for it (TenancyPlan)")
                default:
                    continue
                }
            default:
                continue
            }
        }
    }
}
