"""Regenerate tests/data/media: small images with awkward names, formats and one corrupt file.

The output is committed; run this only to change it: python tests/make_test_images.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

MEDIA = Path(__file__).parent / "data" / "media"


def pattern(color: tuple[int, int, int], size=(64, 48), stripes: int = 4, mode: str = "RGB") -> Image.Image:
    """A colour with diagonal stripes, different for each file so embeddings differ."""
    image = Image.new(mode, size, color + ((255,) if mode == "RGBA" else ()))
    draw = ImageDraw.Draw(image)
    for i in range(stripes):
        x = i * size[0] // stripes
        inverse = (255 - color[0], 255 - color[1], 255 - color[2])
        draw.line([(x, 0), (x + size[1], size[1])], fill=inverse, width=3)
    return image


def main() -> None:
    (MEDIA / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    pattern((220, 30, 30)).save(MEDIA / "red.jpg", quality=90)
    pattern((30, 30, 220), stripes=2).save(MEDIA / "Blue Square.PNG")
    pattern((240, 200, 20), stripes=6).save(MEDIA / "ünïcødé 猫.webp")
    pattern((200, 200, 40), stripes=3).save(MEDIA / "nested" / "yellow.bmp")
    pattern((120, 60, 160), stripes=5).save(MEDIA / "photo.TIFF")
    frames = [pattern((30, 180, 60), stripes=1), pattern((0, 0, 0), stripes=8)]
    frames[0].save(MEDIA / "nested" / "deeper" / "green-anim.gif", save_all=True,
                   append_images=frames[1:], duration=100, loop=0)
    rotated = pattern((250, 130, 0), size=(40, 20), stripes=2)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display: 40x20 stored, 20x40 shown
    rotated.save(MEDIA / "rotated-exif.jpg", exif=exif.tobytes())
    transparent = pattern((0, 120, 120), stripes=7, mode="RGBA")
    transparent.putalpha(Image.linear_gradient("L").resize(transparent.size))
    transparent.save(MEDIA / "transparent.png")
    (MEDIA / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"not really a jpeg" * 8)
    (MEDIA / "notes.txt").write_text("not an image; the scanner ignores it\n")


if __name__ == "__main__":
    main()
