import NIOCore
import SwitchboardCore

/// SPEC's JSON error body: `{"error":{"code":"...","message":"...","details":[...]}}`.
enum ErrorBody {
    /// One bad item of a batch request.
    struct Detail: Sendable {
        let index: Int
        let message: String
    }

    static func encode(code: ErrorCode, message: String, details: [Detail] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeStaticString("{\"error\":{\"code\":")
        buffer.writeJSONString(code.description)
        buffer.writeStaticString(",\"message\":")
        buffer.writeJSONString(message)
        if !details.isEmpty {
            buffer.writeStaticString(",\"details\":[")
            for (position, detail) in details.enumerated() {
                if position > 0 { buffer.writeStaticString(",") }
                buffer.writeStaticString("{\"index\":")
                buffer.writeDecimal(detail.index)
                buffer.writeStaticString(",\"message\":")
                buffer.writeJSONString(detail.message)
                buffer.writeStaticString("}")
            }
            buffer.writeStaticString("]")
        }
        buffer.writeStaticString("}}")
        return buffer
    }
}
