"""Tiny images in unusual modes for tests/it/bad_input.rs, written to tests/data/.

Run once with the project's venv python (Pillow installed):
    python tests/golden/make_odd_images.py
Every file is 32x24 (width x height). Expected decoded RGB values are in the test.
"""
import os

from PIL import Image

W, H = 32, 24
OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


def main():
    os.makedirs(OUT, exist_ok=True)
    # Greyscale JPEG, uniform 200.
    Image.new("L", (W, H), 200).save(os.path.join(OUT, "grey.jpg"), quality=95)
    # RGBA PNG: left half opaque red, right half half-transparent blue (alpha is dropped).
    im = Image.new("RGBA", (W, H), (255, 0, 0, 255))
    im.paste((0, 0, 255, 128), (W // 2, 0, W, H))
    im.save(os.path.join(OUT, "rgba.png"))
    # Grey + alpha PNG, value 60, alpha 10.
    Image.new("LA", (W, H), (60, 10)).save(os.path.join(OUT, "grey_alpha.png"))
    # 16-bit greyscale PNG, value 0xC000 (-> 192 at 8 bits).
    Image.new("I;16", (W, H), 0xC000).save(os.path.join(OUT, "grey16.png"))
    # CMYK JPEG, pure red: C=0 M=255 Y=255 K=0.
    Image.new("CMYK", (W, H), (0, 255, 255, 0)).save(os.path.join(OUT, "cmyk_red.jpg"), quality=95)
    # A plain RGB JPEG, pure green, for size-mismatch tests.
    Image.new("RGB", (W, H), (0, 255, 0)).save(os.path.join(OUT, "rgb_green.jpg"), quality=95)
    for name in sorted(os.listdir(OUT)):
        path = os.path.join(OUT, name)
        im = Image.open(path)
        print(name, os.path.getsize(path), im.mode, im.size, im.convert("RGB").getpixel((1, 1)))


if __name__ == "__main__":
    main()
