// package-service: packages (PackageService) on 127.0.0.1, port FABRIKAM_PORT_BASE + 1 (ServicePorts).   --port N  --data-dir DIR
import Packages
import RPC
import ServiceKit

await runService {
    let configuration = try Configuration(known: ["port", "data-dir"] + Configuration.storeFlags)
    let host = ServiceHost(name: "package", port: try configuration.int("port", default: DefaultPort.package), listenHost: configuration.listenHost)
    let storeChoice = try serviceStore(configuration, service: "package", file: "package.sqlite")
    var router = Router()
    PackageServiceLogic(store: try SQLPackageStore(storeChoice.location)).register(in: &router)
    try await host.serve(router, stores: [storeChoice.probe])
}
