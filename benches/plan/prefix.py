#!/usr/bin/env python3
"""Write the first N rows of an fbin file (u32 n, u32 d, f32 rows) as a new fbin."""
import struct
import sys

src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(src, "rb") as f:
    total, dim = struct.unpack("<II", f.read(8))
    if n > total:
        sys.exit(f"{src} has {total} rows, asked for {n}")
    left = n * dim * 4
    with open(dst, "wb") as out:
        out.write(struct.pack("<II", n, dim))
        while left:
            chunk = f.read(min(left, 64 << 20))
            if not chunk:
                sys.exit(f"{src} is truncated")
            out.write(chunk)
            left -= len(chunk)
