import Foundation

// The escaping rules of the formats this module writes, one function per rule:
//
//   escapeMarkup       HTML and XML (so SVG): text and attribute values   & < > " '
//   escapeDOT          the inside of a Graphviz DOT quoted string          \ " and line breaks
//   escapeScriptJSON   JSON text inside an HTML <script> element           <
//
// HTML text, HTML attributes, SVG text and SVG attributes follow one rule, so they share one
// function; DOT and JSON-in-a-script are other languages with other rules.

/// `text` with `&`, `<`, `>`, `"` and `'` escaped as character references, safe as HTML or XML
/// text and as an attribute value in either kind of quotes: `a < b` becomes `a &lt; b`.
func escapeMarkup(_ text: String) -> String {
    replacing(["&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"], in: text)
}

/// `text` as the inside of a DOT quoted string: backslashes and double quotes escaped, line breaks
/// as `\n`.
func escapeDOT(_ text: String) -> String {
    replacing(["\\": "\\\\", "\"": "\\\"", "\n": "\\n"], in: text)
}

/// JSON text made safe inside an HTML `<script>` element: every `<` is written `\u003c` (the same
/// character to a JSON parser), so no string in it can close the element or open a comment.
func escapeScriptJSON(_ json: String) -> String {
    json.replacingOccurrences(of: "<", with: "\\u003c")
}

/// `text` with each character found in `replacements` replaced by its entry, the others kept.
private func replacing(_ replacements: [Character: String], in text: String) -> String {
    var result = ""
    result.reserveCapacity(text.count)
    for character in text {
        if let replacement = replacements[character] {
            result += replacement
        } else {
            result.append(character)
        }
    }
    return result
}
