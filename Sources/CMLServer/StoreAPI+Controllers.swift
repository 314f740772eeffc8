import CMLKit
import Hummingbird

extension StoreAPI {
    /// The routes of the controllers concern (`ControllerStore`): the records of sweeps and pipelines.
    /// A record belongs to its project: a project-bound token sees and writes only its projects'.
    static let controllerRoutes: [ServerRoute] = [
        ServerRoute(method: .get, path: "/api/v1/store/controllers/{kind}", parameters: []) { route in
            let kind = try route.parameter("kind"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                try store.controllers(kind: kind).filter { access.sees(project: $0.project) }
            })
        },
        ServerRoute(method: .get, path: "/api/v1/store/controllers/{kind}/{id}", parameters: []) { route in
            let kind = try route.parameter("kind"), id = try route.parameter("id"), store = route.store, access = route.access
            return try .wire(try await StoreCalls.run { () throws(CMLError) in
                // A record of another project reads as one that does not exist.
                let visible = try store.controllers(kind: kind).filter { $0.id.hasPrefix(id.lowercased()) && access.sees(project: $0.project) }
                return try ControllerRecords.one(of: Array(visible.prefix(6)), kind: kind, prefix: id)
            })
        },
        ServerRoute(method: .put, path: "/api/v1/store/controllers/{kind}/{id}", parameters: [], scope: .write) { route in
            let kind = try route.parameter("kind"), id = try route.parameter("id")
            let record = try await route.body(ControllerRecord.self, what: "the record")
            guard record.kind == kind, record.id == id else {
                throw CMLError.usage("the record is \(record.kind) \(record.id), not \(kind) \(id) as its path says")
            }
            try ControllerRecords.check(record)
            try route.access.requireWrite(project: record.project)
            let store = route.store, access = route.access
            try await StoreCalls.run { () throws(CMLError) in
                // The project of a record that exists is its own, whatever this one says.
                if let stored = try? store.controller(kind: kind, id: id), stored.id == id {
                    try access.requireWrite(project: stored.project)
                }
                try store.saveController(record)
            }
            return .done
        },
    ]
}
