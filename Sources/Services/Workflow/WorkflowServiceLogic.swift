import DroneDeliveryAPI
import RPC
import ServiceKit

/// Workflow's read-only API: the state of its sagas, for operators and tests.
public struct WorkflowServiceLogic: WorkflowV1.WorkflowService.Handler {
    let store: any SagaStore
    public init(store: any SagaStore) { self.store = store }

    public func getSagaStatus(_ request: WorkflowV1.GetSagaStatusRequest, context: ServerContext) async throws -> WorkflowV1.GetSagaStatusResponse {
        let sagas = try await store.sagas(deliveryID: request.deliveryId)
        guard !sagas.isEmpty else { throw RPCError(.notFound, "no saga for delivery \(request.deliveryId)") }
        var response = WorkflowV1.GetSagaStatusResponse()
        response.deliveryId = request.deliveryId
        response.sagas = sagas.map(\.status)
        return response
    }

    public func listSagas(_ request: WorkflowV1.ListSagasRequest, context: ServerContext) async throws -> WorkflowV1.ListSagasResponse {
        let page = try Page(token: request.pageToken, size: request.pageSize)
        let sagas = try await store.sagas(state: request.state == .unspecified ? nil : request.state, offset: page.offset, limit: page.fetchLimit)
        var response = WorkflowV1.ListSagasResponse()
        (response.sagas, response.nextPageToken) = page.cut(sagas.map(\.status))
        return response
    }
}
