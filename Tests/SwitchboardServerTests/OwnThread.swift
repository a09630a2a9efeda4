import Foundation

/// Runs blocking work (waiting for a child process, a blocking read) on a thread of its own and awaits it.
///
/// Swift's cooperative pool has one thread per core, two on the CI machine: a test that blocks one of them stalls
/// every other test of the parallel suite meanwhile, and their timing bounds with them (a health check's 300 ms
/// timer took 6.6 s while two tests waited for their processes).
func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}
