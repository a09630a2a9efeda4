import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// An API failure answered with SPEC's JSON error body.
struct APIError: Error, HTTPResponseError {
    let status: HTTPResponse.Status
    let code: ErrorCode
    let message: String
    var details: [ErrorBody.Detail] = []
    var headers: HTTPFields = [:]

    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = ErrorBody.encode(code: code, message: message, details: details)
        var headers = headers
        headers[.contentType] = "application/json"
        headers[.contentLength] = "\(body.readableBytes)"
        return Response(status: status, headers: headers, body: .init(byteBuffer: body))
    }

    static func badRequest(_ message: String, details: [ErrorBody.Detail] = []) -> APIError {
        APIError(status: .badRequest, code: .badRequest, message: message, details: details)
    }

    static func unauthorized(_ message: String) -> APIError {
        APIError(status: .unauthorized, code: .unauthorized, message: message, headers: [.wwwAuthenticate: "Bearer"])
    }

    static func forbidden(_ message: String) -> APIError {
        APIError(status: .forbidden, code: .forbidden, message: message)
    }

    static func notFound(_ message: String) -> APIError {
        APIError(status: .notFound, code: .notFound, message: message)
    }
}

/// Turns every error leaving the router into SPEC's JSON error body; a known path asked with another
/// method is 405 with `Allow` (Hummingbird's router says 404 for both).
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let routes: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            throw error
        } catch let error as HTTPError {
            if error.status == .notFound {
                let allowed = routes.methods(for: request.uri.path)
                if !allowed.isEmpty {
                    throw APIError(
                        status: .methodNotAllowed, code: .methodNotAllowed,
                        message: "\(request.method) is not allowed here; use \(allowed.map(\.rawValue).joined(separator: ", "))",
                        headers: [.allow: allowed.map(\.rawValue).joined(separator: ", ")])
                }
                throw APIError.notFound("no route for \(request.method) \(request.uri.path)")
            }
            throw APIError(status: error.status, code: Self.code(for: error.status), message: error.body ?? error.status.reasonPhrase)
        } catch {
            context.logger.error("request failed", metadata: ["sb.error": "\(error)"])
            throw APIError(status: .internalServerError, code: .internalError, message: "internal error")
        }
    }

    private static func code(for status: HTTPResponse.Status) -> ErrorCode {
        switch status {
        case .notFound: .notFound
        case .methodNotAllowed: .methodNotAllowed
        case .unauthorized: .unauthorized
        case .forbidden: .forbidden
        case .tooManyRequests: .rateLimited
        case .badRequest, .contentTooLarge: .badRequest
        default: .internalError
        }
    }
}
