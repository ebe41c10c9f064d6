// Sizes computed from what users write (a model description, a checkpoint's input shape, the
// options of `train`) can be anything: their arithmetic must report an overflow, not trap.

/// `a + b`, or `nil` if either is `nil` or the sum overflows.
package func checkedSum(_ a: Int?, _ b: Int?) -> Int? {
    guard let a, let b else { return nil }
    let (sum, overflow) = a.addingReportingOverflow(b)
    return overflow ? nil : sum
}

/// The product of `factors`, or `nil` if one is `nil` or the product overflows.
package func checkedProduct(_ factors: [Int?]) -> Int? {
    var product = 1
    for factor in factors {
        guard let factor else { return nil }
        let (next, overflow) = product.multipliedReportingOverflow(by: factor)
        if overflow { return nil }
        product = next
    }
    return product
}
