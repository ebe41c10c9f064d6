import ArgumentParser

/// An error the command line reports as one line on stderr, with exit status 1.
struct CommandLineError: Error, CustomStringConvertible {
    /// What went wrong, naming the file or option and what was expected and found.
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// `value` as one of `Choice`'s cases, or an error naming `option`, the values it takes and the one
/// found: `--optimizer: expected one of sgd, momentum, adam, adamw, found 'adma'`.
func parseChoice<Choice: RawRepresentable & CaseIterable>(_ value: String, option: String) throws -> Choice
where Choice.RawValue == String {
    guard let choice = Choice(rawValue: value) else {
        let choices = Choice.allCases.map(\.rawValue).joined(separator: ", ")
        throw ValidationError("\(option): expected one of \(choices), found '\(value)'")
    }
    return choice
}
