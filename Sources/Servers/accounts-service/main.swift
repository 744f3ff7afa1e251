// accounts-service: businesses, users and API keys (AccountsService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 0 (ServicePorts).
//   --port N  --data-dir DIR  --seed-account ID (created if missing, for the local demo; "" for none)
//   --seed-api-key SECRET (an API key for the seeded account, for the local demo; none by default),
//   or --seed-api-key-file PATH / FABRIKAM_SEED_API_KEY_FILE (a mounted Secret; Configuration.secret)
import Accounts
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir", "seed-account", "seed-api-key", "seed-api-key-file"] + Configuration.storeFlags)
    let host = ServiceHost(name: "accounts", port: try configuration.int("port", default: DefaultPort.accounts), listenHost: configuration.listenHost)
    let storeChoice = try serviceStore(configuration, service: "accounts", file: "accounts.sqlite")
    let logic = AccountsServiceLogic(store: try SQLAccountStore(storeChoice.location))
    let seed = configuration.string("seed-account", default: "acct-demo")
    if !seed.isEmpty { try await logic.seedAccount(id: seed, displayName: "Demo Business") }
    let seedKey = try configuration.secret("seed-api-key") ?? ""
    if !seed.isEmpty, !seedKey.isEmpty { try await logic.seedAPIKey(accountID: seed, secret: seedKey) }
    var router = Router()
    logic.register(in: &router)
    try await host.serve(router, stores: [storeChoice.probe])
}
