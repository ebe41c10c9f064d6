import Testing

@testable import BackpropCore
@testable import BackpropData
@testable import BackpropExplain
@testable import BackpropNetwork
@testable import BackpropTraining

/// Parses `text`, or records the syntax error.
private func parse(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) -> JSONValue? {
    do {
        return try JSONParser.parse(Array(text.utf8))
    } catch {
        Issue.record("\(text) did not parse: \(error.reason) at byte \(error.offset)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Expects `text` to be rejected with a reason containing `fragment`.
private func expectSyntaxError(
    _ text: String, containing fragment: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        let value = try JSONParser.parse(Array(text.utf8))
        Issue.record("\(text) parsed as \(value.brief), expected an error", sourceLocation: sourceLocation)
    } catch {
        #expect(error.reason.contains(fragment), "\(error.reason)", sourceLocation: sourceLocation)
    }
}

@Test func jsonKeepsIntegersApartFromOtherNumbers() {
    guard case .array(let items) = parse("[0, -7, 9223372036854775807, 2.0, 1e3, 18446744073709551616]") else {
        Issue.record("not an array")
        return
    }
    #expect(items.map(\.brief) == ["0", "-7", "9223372036854775807", "2.0", "1e3", "18446744073709551616"])
    guard case .integer(-7) = items[1], case .number("2.0") = items[3], case .number = items[5] else {
        Issue.record("wrong kinds: \(items.map(\.kind))")
        return
    }
}

@Test func jsonDecodesStringEscapes() {
    guard case .string(let text) = parse(#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00 ✓""#) else {
        Issue.record("not a string")
        return
    }
    #expect(text == "a\"b\\c/d\n\té😀 ✓")
}

/// A string of a million escapes (a safetensors header's metadata may hold one: a checkpoint's
/// history is JSON in a JSON string) parses in one pass. Appending to a String piece by piece had
/// made this quadratic: 400,000 escapes took 9 s, 3 million minutes. The bound is 20 times what
/// a debug build takes here (1.5 s), so that only the quadratic behaviour can fail it.
@Test func jsonParsesManyEscapesInLinearTime() throws {
    let count = 1_000_000
    let text = "\"" + String(repeating: "\\\"\\u00e9", count: count) + "\""
    let started = ContinuousClock.now
    let value = try JSONParser.parse(Array(text.utf8))
    let elapsed = ContinuousClock.now - started
    guard case .string(let parsed) = value else {
        Issue.record("not a string")
        return
    }
    #expect(parsed.unicodeScalars.count == 2 * count)
    #expect(parsed.hasPrefix("\"é\"é") && parsed.hasSuffix("\"é"))
    #expect(elapsed < .seconds(30), "\(elapsed) for \(2 * count) escapes")
}

@Test func jsonQuotesWhatItParsesBack() {
    let original = "quote \" backslash \\ newline \n bell \u{07} é ✓"
    guard case .string(let text) = parse(JSONText.quoted(original)) else {
        Issue.record("not a string")
        return
    }
    #expect(text == original)
}

@Test func jsonRejectsWhatRFC8259Rejects() {
    expectSyntaxError(#"{"a": 1,}"#, containing: "expected a string key")
    expectSyntaxError("[1, 2,]", containing: "where a value was expected")
    expectSyntaxError(#"{"a": 1, "a": 2}"#, containing: "duplicate key \"a\"")
    expectSyntaxError("[01]", containing: "leading zero")
    expectSyntaxError("[1.]", containing: "expected a digit after '.'")
    expectSyntaxError("\"tab\there\"", containing: "control character 0x9")
    expectSyntaxError(#""\x""#, containing: "invalid escape")
    expectSyntaxError(#""\ud83d""#, containing: "unpaired surrogate")
    expectSyntaxError("{} {}", containing: "after the JSON value")
    expectSyntaxError("[nul]", containing: "where a value was expected")
    expectSyntaxError(
        String(repeating: "[", count: 65) + String(repeating: "]", count: 65), containing: "nested deeper")
}

@Test func jsonAllowsWhitespacePadding() {
    #expect(parse("  {\"a\" : [ 1 , 2 ] }   \n")?.brief == "{…}")
}
