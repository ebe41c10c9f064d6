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
