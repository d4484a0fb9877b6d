"""Malformed and costly images made on the spot: for the hostile-input tests (nothing is committed)."""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def thin_png() -> bytes:
    """1 x 65,535 pixels in about a kilobyte: the model's resize would make it 224 x 14.7 M."""
    return _encode(Image.new("L", (1, 65535)), "PNG", optimize=True)


def thin_jpeg() -> bytes:
    """1 x 65,500 (libjpeg's largest side)."""
    return _encode(Image.new("L", (1, 65500)), "JPEG")


def gif_canvas(side: int = 9000) -> bytes:
    """About 35 bytes declaring a side x side canvas and one frame that fills it."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", side, side, 0, 0, 0)
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0)
    return screen + frame + b"\x02\x02\x44\x01\x00" + b";"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declared(side: int = 9459) -> bytes:
    """About 69 bytes: a valid PNG header declaring side x side grey pixels, and almost no data."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + _chunk(b"IEND", b""))


def jpeg_declared(width: int = 65000, height: int = 65000) -> bytes:
    """A small real JPEG whose frame header is patched to claim a huge size."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (200, 10, 10)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def many_frames_gif(frames: int = 3000) -> bytes:
    """An animated GIF of thousands of tiny frames (only the first is ever decoded)."""
    images = [Image.new("L", (4, 4), 0) for _ in range(frames)]
    for i, image in enumerate(images):
        image.putpixel((i % 4, (i // 4) % 4), 255)  # each frame differs from the one before
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=10, optimize=False)


def odd_modes() -> list[bytes]:
    """Images in the modes photos rarely have: 16-bit, CMYK, 1-bit, float, palette with alpha, ..."""
    out = [_encode(Image.new("I;16", (40, 30), 4000), "PNG"),
           _encode(Image.new("CMYK", (40, 30), (10, 20, 30, 40)), "JPEG"),
           _encode(Image.new("1", (40, 30), 1), "PNG"),
           _encode(Image.new("LA", (40, 30), (90, 128)), "PNG"),
           _encode(Image.new("F", (40, 30), 0.5), "TIFF"),
           _encode(Image.new("I", (40, 30), 70000), "TIFF"),
           _encode(Image.new("RGBA", (40, 30), (1, 2, 3, 0)), "WEBP"),
           _encode(Image.new("YCbCr", (40, 30), (1, 2, 3)), "JPEG")]
    palette = Image.new("P", (40, 30), 3)
    palette.info["transparency"] = 3
    out.append(_encode(palette, "PNG"))
    return out


def exif_tricks() -> list[bytes]:
    """JPEGs whose EXIF block lies: impossible orientations, wrong types, offsets past the end."""
    base = Image.new("RGB", (40, 20), (30, 60, 90))
    out = []
    for orientation in (6, 8, 0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = orientation
        out.append(_encode(base, "JPEG", exif=exif.tobytes()))
    good = _encode(base, "JPEG", exif=_exif_with_orientation(6))
    # A TIFF header in the APP1 block with an IFD offset far past its end, and an entry count
    # of 65,535 in a block that holds two.
    out.append(good.replace(b"MM\x00*\x00\x00\x00\x08", b"MM\x00*\x7f\xff\xff\xff", 1))
    out.append(good.replace(b"MM\x00*\x00\x00\x00\x08\x00\x01", b"MM\x00*\x00\x00\x00\x08\xff\xff", 1))
    return out


def _exif_with_orientation(value: int) -> bytes:
    # Big-endian TIFF header, one IFD entry: Orientation (0x0112), SHORT, count 1.
    ifd = struct.pack(">H", 1) + struct.pack(">HHIHH", 0x0112, 3, 1, value, 0) + struct.pack(">I", 0)
    return b"Exif\x00\x00" + b"MM\x00*\x00\x00\x00\x08" + ifd


def seeds() -> list[bytes]:
    """Small valid images of every format, to mutate."""
    picture = Image.new("RGB", (48, 32), (10, 120, 200))
    picture.paste((250, 250, 0), (10, 5, 30, 20))
    return [_encode(picture, "JPEG", quality=80), _encode(picture, "PNG"),
            _encode(picture.convert("P"), "GIF"), _encode(picture, "WEBP"), _encode(picture, "BMP"),
            _encode(picture, "TIFF"), _encode(picture, "TIFF", compression="tiff_lzw"),
            _encode(picture, "JPEG", progressive=True)]


MAGICS = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II*\x00", b"MM\x00*")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One hostile variant of data: truncated, bit-flipped, bytes spliced, magic swapped, or sizes patched."""
    data = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0:
        return bytes(data[:rng.randrange(1, len(data))])
    if kind == 1:
        for _ in range(rng.randint(1, 12)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:
        start = rng.randrange(len(data))
        data[start:start + rng.randint(1, 16)] = rng.randbytes(rng.randint(0, 32))
        return bytes(data)
    if kind == 3:
        magic = rng.choice(MAGICS)
        return magic + bytes(data[len(magic):])
    if kind == 4:  # a 16- or 32-bit field somewhere set to its largest value: sizes, counts, offsets
        at = rng.randrange(max(1, len(data) - 4))
        data[at:at + rng.choice((2, 4))] = b"\xff" * 4 if rng.random() < 0.5 else b"\x7f\xff\xff\xff"
        return bytes(data[:len(data)])
    return bytes(data) + rng.randbytes(rng.randint(1, 64))  # trailing junk


def hostile_corpus(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """count named hostile images: the crafted ones first, then mutations of the seeds."""
    crafted = [("thin.png", thin_png()), ("thin.jpg", thin_jpeg()), ("canvas.gif", gif_canvas()),
               ("declared.png", png_declared()), ("declared.jpg", jpeg_declared()),
               ("frames.gif", many_frames_gif())]
    crafted += [(f"mode-{i}", b) for i, b in enumerate(odd_modes())]
    crafted += [(f"exif-{i}.jpg", b) for i, b in enumerate(exif_tricks())]
    rng = random.Random(seed)
    bases = seeds() + [b for _, b in crafted]
    out = list(crafted)
    while len(out) < count:
        data = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            data = mutate(data, rng)
        out.append((f"mutant-{len(out)}", data))
    return out[:count]
