// package-service: packages (PackageService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 1 (ServicePorts).   --port N  --data-dir DIR
import Packages
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"])
    let host = ServiceHost(name: "package", port: try configuration.int("port", default: DefaultPort.package), listenHost: configuration.listenHost)
    let path = try databasePath(configuration, file: "package.sqlite")
    var router = Router()
    PackageServiceLogic(store: try SQLitePackageStore(path: path)).register(in: &router)
    try await host.serve(router, stores: [StoreProbe(name: "package store", path: path)])
}
