import Foundation
import Testing

@testable import SwitchboardCore

/// Every input of the fuzz seed corpus (`Fuzz/Corpus`, plus crashes fixed since) through the decoder,
/// with the harness's invariants, in the ordinary test run.
@Suite struct DecoderCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus")

    static var inputs: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: corpus.path)) ?? []).sorted()
    }

    @Test func corpusIsPresent() {
        #expect(Self.inputs.count >= 15)
    }

    @Test(arguments: inputs)
    func decoderKeepsItsPromises(input: String) throws {
        let bytes = [UInt8](try Data(contentsOf: Self.corpus.appendingPathComponent(input)))
        switch Result(catching: { () throws(ClientRequestError) in try ClientRequest.decode(bytes) }) {
        case .success(let request):
            if case .publish(_, _, let data, _) = request.command {
                #expect(try JSONValue.parse(Array(data.utf8)).jsonText == data)
            }
        case .failure(let error):
            #expect(!error.message.isEmpty)
        }
        if let value = try? JSONValue.parse(bytes) {
            #expect(try JSONValue.parse(Array(value.jsonText.utf8)) == value)
        }
    }

    @Test(arguments: [
        "444444444444444444.4", "4.444444444444444e+17", "4.4444444444444444e17", "1e18", "9.3e18", "-0.0", "1.0",
        "0.1", "1.5e-300", "9223372036854775807", "-9223372036854775808", "123456789012345678.9",
    ])
    func numbersSurviveARoundTrip(text: String) throws {
        // Found by fuzzing: an integral double printed in exponent form came back as an integer, so the value
        // changed between parse and re-parse. Integral doubles now decode as integers from the start.
        let value = try JSONValue.parse(Array(text.utf8))
        #expect(try JSONValue.parse(Array(value.jsonText.utf8)) == value, "\(text) -> \(value.jsonText)")
    }
}
