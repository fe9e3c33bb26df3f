"""Real PNGs for the simulator, drawn from the prompt and the seed."""

import io
import random
import textwrap

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

# Pillow's built-in font has no Turkish letters (ı, ğ, ş); DejaVu has them
# and is on most Linux machines (Debian's Chromium pulls it in).
_FONTS = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for name in _FONTS:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def draw_picture(prompt: str, seed: int, width: int, height: int, infotext: str) -> bytes:
    """A deterministic picture: same prompt and seed, same bytes."""
    rng = random.Random(f"{seed}:{prompt}")

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    # A 2x2 image scaled up bicubically is a cheap smooth gradient.
    corners = Image.new("RGB", (2, 2))
    corners.putdata([colour(), colour(), colour(), colour()])
    image = corners.resize((width, height), Image.Resampling.BICUBIC)

    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(rng.randint(3, 7)):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randint(min(width, height) // 16, min(width, height) // 4)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(*colour(), 110))

    size = max(12, min(width, height) // 16)
    font = _font(size)
    lines = textwrap.wrap(prompt, width=max(8, width // (size // 2 + 1))) or [""]
    text = "\n".join(lines[:4])
    box = draw.multiline_textbbox((0, 0), text, font=font, align="center")
    text_w, text_h = box[2] - box[0], box[3] - box[1]
    left, top = (width - text_w) / 2, height - text_h - size * 1.5
    draw.rounded_rectangle(
        (left - size / 2, top - size / 2, left + text_w + size / 2, top + text_h + size / 2),
        radius=size // 2,
        fill=(0, 0, 0, 120),
    )
    draw.multiline_text((left, top), text, font=font, fill=(255, 255, 255), align="center")
    # A diffusion model's picture is fine-grained all over, and its PNG is
    # a few hundred kB (about 450 kB at 512 x 512), not the few tens a
    # smooth gradient compresses to: a faint grain makes the answer as big
    # as Forge's, so what reading and storing it costs is measured.
    grain = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    image = Image.blend(image, grain, 0.03)

    metadata = PngInfo()
    metadata.add_text("parameters", infotext)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=metadata, compress_level=1)
    return out.getvalue()


def draw_preview(prompt: str, seed: int, width: int, height: int, done: float) -> bytes:
    """A live preview `done` (0..1) of the way through: the final picture
    seen through noise that fades as sampling goes on, at half size (an
    approximate decode, as Forge's cheap previews are)."""
    small = (max(8, width // 2), max(8, height // 2))
    final = Image.open(io.BytesIO(draw_picture(prompt, seed, width, height, ""))).convert("RGB")
    final = final.resize(small, Image.Resampling.BILINEAR)
    rng = random.Random(f"noise:{seed}:{prompt}")
    # Latent-sized noise, scaled up: blotches, as an early diffusion step looks.
    grain = (max(2, small[0] // 8), max(2, small[1] // 8))
    noise = Image.frombytes("RGB", grain, rng.randbytes(grain[0] * grain[1] * 3))
    noise = noise.resize(small, Image.Resampling.BICUBIC)
    image = Image.blend(noise, final, max(0.0, min(done, 1.0)) ** 0.7)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()
