/// The controllers concern over the store API (docs/http-api.md, "The store API: sweeps and pipelines").
extension HTTPStore {
    private static func controllerPath(_ kind: String, _ id: String? = nil) -> String {
        "/api/v1/store/controllers/" + escape(kind) + (id.map { "/" + escape($0) } ?? "")
    }

    public func saveController(_ record: ControllerRecord) throws(CMLError) {
        try ControllerRecords.check(record)
        try send(request("PUT", Self.controllerPath(record.kind, record.id), body: .bytes(try WireCodec.encode(record)),
                         type: "application/json"))
    }

    public func controller(kind: String, id prefix: String) throws(CMLError) -> ControllerRecord {
        try call("GET", Self.controllerPath(kind, prefix), as: ControllerRecord.self)
    }

    public func controllers(kind: String) throws(CMLError) -> [ControllerRecord] {
        try call("GET", Self.controllerPath(kind), as: [ControllerRecord].self)
    }
}
