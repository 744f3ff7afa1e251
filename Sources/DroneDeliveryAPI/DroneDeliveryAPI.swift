// DroneDeliveryAPI: the contracts of the drone delivery services, generated from
// proto/fabrikam/dronedelivery by `make proto` (see Generated/). One versioned proto package per
// service; the Swift namespaces mirror the packages (`Fabrikam.Dronedelivery.Delivery.V1`).

public import ProtobufKit

/// Short names for the versioned packages, so service code reads `DeliveryV1.Delivery`.
public typealias CommonV1 = Fabrikam.Dronedelivery.Common.V1
public typealias IngestionV1 = Fabrikam.Dronedelivery.Ingestion.V1
public typealias PackageV1 = Fabrikam.Dronedelivery.Package.V1
public typealias DroneSchedulerV1 = Fabrikam.Dronedelivery.Dronescheduler.V1
public typealias DeliveryV1 = Fabrikam.Dronedelivery.Delivery.V1
public typealias DeliveryHistoryV1 = Fabrikam.Dronedelivery.Deliveryhistory.V1
public typealias AccountsV1 = Fabrikam.Dronedelivery.Accounts.V1
public typealias SupervisorV1 = Fabrikam.Dronedelivery.Supervisor.V1
public typealias WorkflowV1 = Fabrikam.Dronedelivery.Workflow.V1
public typealias TelemetryV1 = Fabrikam.Dronedelivery.Telemetry.V1

/// Every file of this module, for type registries and the reflection service.
public let droneDeliveryProtoFiles: [ProtoFileMetadata] = [
    CommonV1.CommonProtoFile.metadata,
    IngestionV1.IngestionProtoFile.metadata,
    PackageV1.PackageProtoFile.metadata,
    DroneSchedulerV1.DroneschedulerProtoFile.metadata,
    DeliveryV1.DeliveryProtoFile.metadata,
    DeliveryHistoryV1.DeliveryhistoryProtoFile.metadata,
    AccountsV1.AccountsProtoFile.metadata,
    SupervisorV1.SupervisorProtoFile.metadata,
    WorkflowV1.WorkflowProtoFile.metadata,
    TelemetryV1.TelemetryProtoFile.metadata,
]
