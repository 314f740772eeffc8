/// What the importer takes from one TensorBoard `Event` record: its time, its step, and the values of
/// its `Summary`. Field numbers are those of tensorboard/compat/proto/event.proto, summary.proto and
/// tensor.proto; everything else (file_version, graphs, session logs) is skipped.
struct TensorBoardEvent {
    var wallTime: Double = 0
    var step: Int64 = 0
    var values: [SummaryValue] = []

    /// Decodes the Event message in `bytes[range]`.
    init(decoding bytes: [UInt8], range: Range<Int>) throws(ProtobufError) {
        var event = ProtobufReader(bytes, range: range)
        while let (number, value) = try event.next() {
            switch (number, value) {
            case (1, .fixed64(let bits)): wallTime = Double(bitPattern: bits)
            case (2, .varint(let step)): self.step = Int64(bitPattern: step)
            case (5, .lengthDelimited(let summary)):
                var fields = event.message(summary)
                while let (number, value) = try fields.next() {
                    if number == 1, case .lengthDelimited(let range) = value {
                        values.append(try SummaryValue(decoding: event.message(range)))
                    }
                }
            default: break
            }
        }
    }
}

/// One `Summary.Value`: its tag, the plugin its metadata names (TensorFlow 2 writes the metadata only
/// with a tag's first value), and its number when it is a scalar.
struct SummaryValue {
    enum Scalar: Equatable {
        /// `simple_value`: always a scalar, whatever the plugin.
        case simple(Double)
        /// A one-element numeric tensor: a scalar when its plugin is "scalars" or none.
        case tensor(Double)
    }

    var tag = ""
    var plugin: String?
    /// nil for images, histograms, text, audio and tensors of more than one element or of other types.
    var scalar: Scalar?

    init(decoding message: ProtobufReader) throws(ProtobufError) {
        var fields = message
        while let (number, value) = try fields.next() {
            switch (number, value) {
            case (1, .lengthDelimited(let range)): tag = message.string(range)
            case (2, .fixed32(let bits)): scalar = .simple(Double(Float(bitPattern: bits)))
            case (8, .lengthDelimited(let range)): scalar = try Self.tensorScalar(message.message(range)).map { .tensor($0) }
            case (9, .lengthDelimited(let range)): plugin = try Self.pluginName(metadata: message.message(range))
            default: break
            }
        }
    }

    /// SummaryMetadata.plugin_data (1) .plugin_name (1).
    private static func pluginName(metadata: ProtobufReader) throws(ProtobufError) -> String {
        var metadata = metadata
        while let (number, value) = try metadata.next() {
            guard number == 1, case .lengthDelimited(let pluginData) = value else { continue }
            var data = metadata.message(pluginData)
            while let (number, value) = try data.next() {
                if number == 1, case .lengthDelimited(let name) = value { return metadata.string(name) }
            }
        }
        return ""
    }

    /// The DataType values (types.proto) read as numbers, with their size in `tensor_content`.
    private enum DataType: UInt64 {
        case float = 1, double = 2, int32 = 3, int64 = 9

        var contentSize: Int { self == .float || self == .int32 ? 4 : 8 }
    }

    /// The value of a TensorProto that holds exactly one number; nil otherwise.
    private static func tensorScalar(_ tensor: ProtobufReader) throws(ProtobufError) -> Double? {
        var fields = tensor
        var dtype: UInt64 = 0
        var elements: Int64 = 1
        var content: Range<Int>?
        // The first element of each typed repeated field, packed or not.
        var floatValue, doubleValue, intValue, int64Value: Double?
        let bytes = tensor.bytes
        while let (number, value) = try fields.next() {
            switch (number, value) {
            case (1, .varint(let type)): dtype = type
            case (2, .lengthDelimited(let shape)):
                guard let count = try elementCount(shape: tensor.message(shape)) else { return nil }
                elements = count
            case (4, .lengthDelimited(let range)): content = range
            case (5, .fixed32(let bits)): floatValue = floatValue ?? Double(Float(bitPattern: bits))
            case (5, .lengthDelimited(let range)) where range.count >= 4:
                floatValue = floatValue ?? Double(Float(bitPattern: UInt32(ProtobufReader.littleEndian(bytes, at: range.lowerBound, size: 4))))
            case (6, .fixed64(let bits)): doubleValue = doubleValue ?? Double(bitPattern: bits)
            case (6, .lengthDelimited(let range)) where range.count >= 8:
                doubleValue = doubleValue ?? Double(bitPattern: ProtobufReader.littleEndian(bytes, at: range.lowerBound, size: 8))
            case (7, .varint(let raw)): intValue = intValue ?? Double(Int32(truncatingIfNeeded: raw))
            case (7, .lengthDelimited(let range)):
                if intValue == nil, let raw = try tensor.firstPackedVarint(range) { intValue = Double(Int32(truncatingIfNeeded: raw)) }
            case (10, .varint(let raw)): int64Value = int64Value ?? Double(Int64(bitPattern: raw))
            case (10, .lengthDelimited(let range)):
                if int64Value == nil, let raw = try tensor.firstPackedVarint(range) { int64Value = Double(Int64(bitPattern: raw)) }
            default: break
            }
        }
        guard elements == 1, let type = DataType(rawValue: dtype) else { return nil }
        if let content, !content.isEmpty {
            guard content.count == type.contentSize else { return nil }
            let raw = ProtobufReader.littleEndian(bytes, at: content.lowerBound, size: type.contentSize)
            switch type {
            case .float: return Double(Float(bitPattern: UInt32(raw)))
            case .double: return Double(bitPattern: raw)
            case .int32: return Double(Int32(truncatingIfNeeded: raw))
            case .int64: return Double(Int64(bitPattern: raw))
            }
        }
        switch type {
        case .float: return floatValue
        case .double: return doubleValue
        case .int32: return intValue
        case .int64: return int64Value
        }
    }

    /// The number of elements of a TensorShapeProto (dim 2, each with size 1); nil for an unknown rank
    /// (3), an unknown dimension (-1) or one too large to count.
    private static func elementCount(shape: ProtobufReader) throws(ProtobufError) -> Int64? {
        var fields = shape
        var count: Int64 = 1
        while let (number, value) = try fields.next() {
            switch (number, value) {
            case (2, .lengthDelimited(let dim)):
                var size: Int64 = 0
                var dimFields = shape.message(dim)
                while let (number, value) = try dimFields.next() {
                    if number == 1, case .varint(let raw) = value { size = Int64(bitPattern: raw) }
                }
                let (product, overflow) = count.multipliedReportingOverflow(by: size)
                guard size >= 0, !overflow else { return nil }
                count = product
            case (3, .varint(let unknown)) where unknown != 0: return nil
            default: break
            }
        }
        return count
    }
}
