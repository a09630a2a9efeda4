import Foundation
import RedisTestSupport

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

/// What a finished child wrote and how it ended.
struct ChildOutput: Sendable {
    /// The exit status, or 128 + the signal that ended it (as a shell reports it).
    let status: Int32
    let standardOutput: String
    let standardError: String
}

extension ChildProcess {
    /// Runs `executable` to its end with `input` on its standard input, collecting both outputs (each read on a
    /// thread of its own, so that a full pipe of one never blocks the child while the other is read).
    static func output(
        of executable: String, _ arguments: [String], input: String? = nil, environment: [String: String] = [:]
    ) async throws -> ChildOutput {
        let (stdin, stdout, stderr) = (Pipe(), Pipe(), Pipe())
        let child = try ChildProcess(
            executable: executable, arguments: arguments, environment: environment,
            standardInput: .pipe(stdin), standardOutput: .pipe(stdout), standardError: .pipe(stderr))
        async let written: Void = onOwnThread {
            if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
            try? stdin.fileHandleForWriting.close()
        }
        async let out = onOwnThread { String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        async let err = onOwnThread { String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) }
        let (standardOutput, standardError) = try await (out, err)
        try await written
        let status: Int32 = switch try await onOwnThread({ child.waitUntilExit() }) {
        case .exit(let code): code
        case .signal(let signal): 128 + signal
        }
        return ChildOutput(status: status, standardOutput: standardOutput, standardError: standardError)
    }
}
