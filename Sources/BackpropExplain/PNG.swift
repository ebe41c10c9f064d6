import Foundation

// A small PNG writer for the walkthrough's feature maps and kernels: one 8-bit palette image
// (colour type 3), its pixel rows stored without compression (zlib "stored" blocks), so that it
// needs no library. A 28×28 map costs under a kilobyte; the page inlines each image as a `data:`
// address, and so still refers to nothing outside itself.
//
// The format (the PNG specification, 2nd edition, and RFC 1950/1951 for the zlib stream):
//
//     signature  89 50 4E 47 0D 0A 1A 0A
//     chunk      length (4 bytes, big-endian), type (4 ASCII), data, CRC-32 of type and data
//     IHDR       width, height, bit depth 8, colour type 3, compression 0, filter 0, interlace 0
//     PLTE       the palette, 3 bytes (r, g, b) per colour
//     IDAT       zlib: 78 01, stored blocks (final bit, LEN, ~LEN, bytes), Adler-32 of the data
//     IEND       empty
//
// Each pixel row is preceded by its filter type, 0 (none).

/// An image of palette indices, written as a PNG file.
struct PNG {
    /// The width in pixels.
    let width: Int
    /// The height in pixels.
    let height: Int
    /// One palette index per pixel, row by row. // (height, width)
    let pixels: [UInt8]
    /// The colours, `(red, green, blue)`, at most 256.
    let palette: [(red: UInt8, green: UInt8, blue: UInt8)]

    /// An image of `width × height` palette indices.
    /// - Precondition: `pixels` has `width * height` entries, each below `palette.count`, and the
    ///   palette has 1 to 256 colours.
    init(width: Int, height: Int, pixels: [UInt8], palette: [(red: UInt8, green: UInt8, blue: UInt8)]) {
        precondition(width > 0 && height > 0, "PNG: size \(width)×\(height) must be at least 1×1")
        precondition(
            pixels.count == width * height, "PNG: \(pixels.count) pixels do not fill \(width)×\(height)")
        precondition((1...256).contains(palette.count), "PNG: a palette has 1 to 256 colours, got \(palette.count)")
        precondition(
            pixels.allSatisfy { Int($0) < palette.count }, "PNG: a pixel indexes past the \(palette.count) colours")
        self.width = width
        self.height = height
        self.pixels = pixels
        self.palette = palette
    }

    /// The file's bytes.
    var bytes: [UInt8] {
        var header: [UInt8] = []
        header += PNG.bigEndian(UInt32(width))
        header += PNG.bigEndian(UInt32(height))
        header += [8, 3, 0, 0, 0]  // bit depth 8, palette, deflate, no filter method, no interlace
        var rows: [UInt8] = []
        rows.reserveCapacity(height * (width + 1))
        for row in 0..<height {
            rows.append(0)  // filter type: none
            rows += pixels[(row * width)..<((row + 1) * width)]
        }
        var file: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        file += PNG.chunk("IHDR", header)
        file += PNG.chunk("PLTE", palette.flatMap { [$0.red, $0.green, $0.blue] })
        file += PNG.chunk("IDAT", PNG.zlibStored(rows))
        file += PNG.chunk("IEND", [])
        return file
    }

    /// The image as a `data:` address, for an `<img src=...>`.
    var dataURI: String {
        "data:image/png;base64," + Data(bytes).base64EncodedString()
    }

    // MARK: The pieces of the format

    /// A chunk: length, type, data, and the CRC-32 of type and data.
    static func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
        let typeBytes = Array(type.utf8)
        return bigEndian(UInt32(data.count)) + typeBytes + data + bigEndian(crc32(typeBytes + data))
    }

    /// `data` as a zlib stream of stored (uncompressed) deflate blocks of at most 65,535 bytes.
    static func zlibStored(_ data: [UInt8]) -> [UInt8] {
        var stream: [UInt8] = [0x78, 0x01]  // deflate, 32 KiB window; no dictionary, fastest
        var start = 0
        repeat {
            let end = Swift.min(start + 65_535, data.count)
            let length = UInt16(end - start)
            stream.append(end == data.count ? 1 : 0)  // BFINAL, BTYPE 00 (stored)
            stream += [UInt8(length & 0xFF), UInt8(length >> 8), UInt8(~length & 0xFF), UInt8(~length >> 8)]
            stream += data[start..<end]
            start = end
        } while start < data.count
        return stream + bigEndian(adler32(data))
    }

    /// The CRC-32 of the PNG specification (polynomial 0xEDB88320, reflected).
    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in data {
            crc = crcTable[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    /// The CRC-32 of every byte value, computed once.
    private static let crcTable: [UInt32] = (0..<256).map { value in
        var c = UInt32(value)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The Adler-32 checksum of RFC 1950: two sums modulo 65,521.
    static func adler32(_ data: [UInt8]) -> UInt32 {
        var a: UInt32 = 1
        var b: UInt32 = 0
        for byte in data {
            a = (a + UInt32(byte)) % 65_521
            b = (b + a) % 65_521
        }
        return b << 16 | a
    }

    /// The four bytes of `value`, most significant first.
    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8((value >> 16) & 0xFF), UInt8((value >> 8) & 0xFF), UInt8(value & 0xFF)]
    }
}
