#!/usr/bin/env python3
"""Write the tiny IDX fixtures that IDXTests.swift reads, independently of Backprop's writer.

Standard library only (struct, gzip). Run from anywhere:

    python3 Tests/BackpropTests/Fixtures/make_idx.py

IDX layout: magic 00 00 <type> <rank>, then `rank` big-endian uint32 sizes, then the elements
row-major, big-endian.

Files and the values the Swift tests expect:

  tiny-images-idx3-ubyte        uint8 (0x08), shape [3, 2, 2], values 0, 20, 40, ..., 220
  tiny-images-idx3-ubyte.gz     the same bytes, one gzip member
  tiny-multimember-idx3-ubyte.gz
                                the same bytes split after byte 10 into two gzip members,
                                concatenated (as `cat a.gz b.gz` would)
  tiny-labels-idx1-ubyte.gz     uint8, shape [3], values 9, 0, 3
  tiny-int16-idx2               int16 (0x0B), shape [2, 3], values -300, -1, 0, 1, 300, 32767
  tiny-float32-idx1             float32 (0x0D), shape [3], values 0.5, -1.25, 1e30 (as float32)
  tiny-float64-idx1             float64 (0x0E), shape [2], values 0.1, -2.0
"""

import gzip
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def idx(type_code, shape, payload):
    """Magic, sizes, payload."""
    header = bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape)
    return header + payload


def gz(data):
    # mtime=0 so that the files are byte-for-byte reproducible.
    return gzip.compress(data, compresslevel=9, mtime=0)


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def main():
    images = idx(0x08, [3, 2, 2], bytes(20 * i for i in range(12)))
    write("tiny-images-idx3-ubyte", images)
    write("tiny-images-idx3-ubyte.gz", gz(images))
    write("tiny-multimember-idx3-ubyte.gz", gz(images[:10]) + gz(images[10:]))
    write("tiny-labels-idx1-ubyte.gz", gz(idx(0x08, [3], bytes([9, 0, 3]))))
    write("tiny-int16-idx2", idx(0x0B, [2, 3], struct.pack(">6h", -300, -1, 0, 1, 300, 32767)))
    write("tiny-float32-idx1", idx(0x0D, [3], struct.pack(">3f", 0.5, -1.25, 1e30)))
    write("tiny-float64-idx1", idx(0x0E, [2], struct.pack(">2d", 0.1, -2.0)))


if __name__ == "__main__":
    main()
