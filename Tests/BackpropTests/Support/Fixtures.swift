import Foundation

/// The URL of a file in `Tests/BackpropTests/Fixtures/` (copied into the test bundle).
///
/// The fixtures are written by the Python scripts next to them (`make_fixtures.py`,
/// `make_idx.py`), independently of Backprop's own writers.
func fixtureURL(_ name: String) -> URL {
    guard let folder = Bundle.module.url(forResource: "Fixtures", withExtension: nil) else {
        fatalError("fixtureURL: the test bundle has no Fixtures folder")
    }
    return folder.appendingPathComponent(name)
}

/// The file-system path of a fixture, for the readers that take a path.
func fixturePath(_ name: String) -> String {
    fixtureURL(name).path
}
