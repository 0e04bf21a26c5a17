#!/usr/bin/env python3
"""Convert a PNG photo to the binary grayscale PGM (P5, maxval 255) the detector reads.

Usage:
  python3 convert.py astronaut.png astronaut.pgm
  python3 convert.py astronaut.png no-face.pgm --crop X Y W H

Standard library only (zlib), so no imaging package is needed. Handles 8-bit,
non-interlaced PNGs of color type gray, RGB, gray+alpha and RGBA (alpha is ignored).
Grayscale uses the ITU-R BT.601 luma weights, in integers with rounding half up:
  Y = (299*R + 587*G + 114*B + 500) // 1000
See PROVENANCE.md for the exact commands used for the committed files.
"""
import argparse
import struct
import zlib

CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG color type -> samples per pixel


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise SystemExit(f"{path}: not a PNG file")
    pos, idat, header = 8, bytearray(), None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    width, height, depth, ctype, _, _, interlace = header
    if depth != 8 or interlace != 0 or ctype not in CHANNELS:
        raise SystemExit(f"{path}: only 8-bit non-interlaced gray/RGB(A) PNGs are supported")
    bpp = CHANNELS[ctype]
    stride = width * bpp
    raw = zlib.decompress(bytes(idat))
    rows, prev = [], bytearray(stride)
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            upleft = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif ftype == 4:
                line[i] = (line[i] + paeth(left, up, upleft)) & 0xFF
            elif ftype != 0:
                raise SystemExit(f"{path}: bad PNG filter type {ftype}")
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def to_gray(width, bpp, row):
    if bpp <= 2:
        return bytes(row[x * bpp] for x in range(width))
    return bytes(
        (299 * row[x * bpp] + 587 * row[x * bpp + 1] + 114 * row[x * bpp + 2] + 500) // 1000
        for x in range(width)
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("png")
    ap.add_argument("pgm")
    ap.add_argument("--crop", nargs=4, type=int, metavar=("X", "Y", "W", "H"))
    args = ap.parse_args()
    width, height, bpp, rows = read_png(args.png)
    x, y, w, h = args.crop if args.crop else (0, 0, width, height)
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > width or y + h > height:
        raise SystemExit("crop rectangle outside the image")
    gray = b"".join(to_gray(width, bpp, rows[r])[x:x + w] for r in range(y, y + h))
    with open(args.pgm, "wb") as f:
        f.write(b"P5\n%d %d\n255\n" % (w, h) + gray)


if __name__ == "__main__":
    main()
