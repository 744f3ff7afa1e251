// package-service: packages (PackageService) on 127.0.0.1:50052.   --port N  --data-dir DIR
import Packages
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"])
    let host = ServiceHost(name: "package", port: try configuration.int("port", default: DefaultPort.package), listenHost: configuration.listenHost)
    var router = Router()
    PackageServiceLogic(store: try SQLitePackageStore(path: try databasePath(configuration, file: "package.sqlite"))).register(in: &router)
    try await host.serve(router)
}
