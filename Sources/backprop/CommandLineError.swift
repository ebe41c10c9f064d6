import ArgumentParser

/// An error the command line reports as one line on stderr, with exit status 1.
struct CommandLineError: Error, CustomStringConvertible {
    /// What went wrong, naming the file or option and what was expected and found.
    let description: String

    init(_ description: String) {
        self.description = description
    }
}
