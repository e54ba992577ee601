"""Synthetic laundry photos, so that the first model can be trained without any data.

No pretrained weights can be downloaded, and there are no labelled photos yet, so the
first model version learns from pictures this module draws: one garment lying flat on a
textured surface, seen from above, in a random fabric colour, position, size and
rotation. Its condition is drawn onto the fabric: `stained` adds soft, irregular, darker
(brownish) blotches through which the fabric's texture still shows; `torn` cuts jagged
holes and slits through which the background shows, with frayed, lighter rims; `clean`
adds nothing.

Everything is deterministic: sample `i` of one (garment, condition) combination depends
only on the seed, the combination and `i`, so a larger `per_class` extends a smaller one
instead of reshuffling it, and a test can rely on the same pixels every run.

Pictures are drawn at twice the requested size and scaled down, which smooths the edges
the way a camera would.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from ml.labels import LABEL_SPACES

Sample = tuple[Image.Image, dict[str, str]]
Point = tuple[float, float]

RENDER_SCALE = 2
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}

STAIN_COLOURS = [
    (112, 72, 32),  # coffee
    (92, 60, 28),  # mud
    (70, 62, 50),  # grease
    (104, 36, 44),  # red wine
    (130, 100, 40),  # curry
]


def generate(
    *, per_class: int, image_size: int, seed: int, garments: Sequence[str] | None = None, workers: int = 1
) -> list[Sample]:
    """`per_class` pictures of every (garment, condition) combination, with their labels.

    The list is ordered by garment, then condition, then sample number, and is the same
    for any number of `workers` (processes drawing in parallel; drawing 2,000 pictures
    takes about 20 s on one core). `garments` restricts the garments drawn.
    """
    if per_class < 1:
        raise ValueError("per_class must be at least 1")
    if image_size < 16:
        raise ValueError("image_size must be at least 16 pixels")
    combinations = []
    for garment in garments or LABEL_SPACES["garment"]:
        if garment not in GARMENT_SHAPES:
            raise ValueError(f"no synthetic silhouette for garment {garment!r}")
        combinations.extend((garment, condition) for condition in LABEL_SPACES["condition"])
    jobs = [(garment, condition, per_class, image_size, seed) for garment, condition in combinations]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_process_context()) as pool:
            chunks = list(pool.map(_draw_combination, jobs))
    else:
        chunks = [_draw_combination(job) for job in jobs]
    return [sample for chunk in chunks for sample in chunk]


def write_image_folder(
    directory: str | Path, *, per_class: int, image_size: int, seed: int, image_format: str = "png", workers: int = 1
) -> list[Path]:
    """Write `generate(...)` as DIR/<garment>/<condition>/<nnnn>.<format>; return the paths.

    This is the layout `ml.datasets.load_image_folder` and `train_model --data` read.
    """
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}")
    directory = Path(directory)
    paths = []
    samples = generate(per_class=per_class, image_size=image_size, seed=seed, workers=workers)
    for index, (image, labels) in enumerate(samples):
        folder = directory / labels["garment"] / labels["condition"]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{index % per_class:04d}.{image_format}"
        image.save(path, IMAGE_FORMATS[image_format])
        paths.append(path)
    return paths


def draw_sample(*, garment: str, condition: str, image_size: int, seed: int, number: int) -> Image.Image:
    """One picture: sample `number` of (garment, condition) for `seed`."""
    # str seeds are hashed with SHA-512 by `random`, independent of PYTHONHASHSEED
    rng = random.Random(f"laundry:{seed}:{garment}:{condition}:{number}")
    np_rng = np.random.default_rng(rng.getrandbits(64))
    size = image_size * RENDER_SCALE

    background = _background(size, rng, np_rng)
    fabric_rgb = _fabric_colour(rng, background)
    outline = GARMENT_SHAPES[garment](rng)
    mask, details = _garment_mask(outline, size, rng)

    fabric = _fabric(size, fabric_rgb, rng, np_rng)
    for detail_mask, shade in details:
        fabric = Image.composite(_shade(fabric, shade), fabric, detail_mask)
    if condition == "stained":
        fabric = _add_stains(fabric, mask, size, rng)

    picture = _drop_shadow(background, mask, size)
    picture = Image.composite(fabric, picture, mask)
    if condition == "torn":
        picture = _add_tears(picture, background, mask, fabric_rgb, size, rng)
    picture = _camera(picture, np_rng, rng)
    return picture.resize((image_size, image_size), Image.Resampling.LANCZOS)


def _process_context() -> multiprocessing.context.BaseContext:
    # fork where there is one: the children only draw with PIL and numpy (never torch, never
    # the database) and exit with os._exit, and unlike spawn, fork does not re-run the
    # caller's __main__ module (a script without a __main__ guard would recurse)
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _draw_combination(job: tuple[str, str, int, int, int]) -> list[Sample]:
    garment, condition, per_class, image_size, seed = job
    labels = {"garment": garment, "condition": condition}
    return [
        (draw_sample(garment=garment, condition=condition, image_size=image_size, seed=seed, number=number),
         dict(labels))
        for number in range(per_class)
    ]


# --- garment silhouettes ----------------------------------------------------------------
# Each returns polygons in garment coordinates (x right, y down, roughly within [-1, 1]):
# a list of (polygon, shade) where shade 0 is the fabric itself and other shades are
# details (waistband, cuffs, stripes) drawn a little darker or lighter.

Outline = list[tuple[list[Point], float]]


def _shirt(rng: random.Random) -> Outline:
    half = rng.uniform(0.42, 0.52)
    top, hem = -0.78, rng.uniform(0.82, 0.95)
    sleeve_length = rng.uniform(0.35, 0.85)
    sleeve_width = rng.uniform(0.26, 0.34)
    angle = math.radians(rng.uniform(20, 55))  # sleeves point out and down
    sides = {}
    for side in (-1, 1):
        shoulder = (side * (half + 0.06), top)
        direction = (side * math.cos(angle), math.sin(angle))
        normal = (-direction[1] * side, direction[0] * side)
        outer = (shoulder[0] + direction[0] * sleeve_length, shoulder[1] + direction[1] * sleeve_length)
        inner = (outer[0] + normal[0] * sleeve_width, outer[1] + normal[1] * sleeve_width)
        armpit = (side * half, top + sleeve_width / math.cos(angle) * 0.9)
        sides[side] = [shoulder, outer, inner, armpit, (side * half, hem)]
    neckline = (0.0, top + rng.uniform(0.1, 0.2))
    # down the left side, up the right side, then the neckline
    outline = [(-0.17, top - 0.05), *sides[-1], *reversed(sides[1]), (0.17, top - 0.05), neckline]
    parts: Outline = [(outline, 0.0)]
    collar = [(-0.19, top - 0.06), (0.19, top - 0.06), (0.0, top + 0.24)]
    parts.append((collar, rng.choice([-0.18, 0.15])))
    if rng.random() < 0.5:  # a button placket
        parts.append(([(-0.03, top + 0.2), (0.03, top + 0.2), (0.03, hem), (-0.03, hem)], -0.15))
    return parts


def _trousers(rng: random.Random) -> Outline:
    waist = rng.uniform(0.36, 0.44)
    hips = waist + rng.uniform(0.04, 0.1)
    crotch = rng.uniform(-0.38, -0.2)
    foot_out = hips + rng.uniform(0.0, 0.12)
    foot_in = rng.uniform(0.12, 0.22)
    outline = [
        (-waist, -0.92), (waist, -0.92), (hips, -0.5), (foot_out, 0.95), (foot_in, 0.95), (0.0, crotch),
        (-foot_in, 0.95), (-foot_out, 0.95), (-hips, -0.5),
    ]
    band = [(-waist, -0.92), (waist, -0.92), (waist + 0.01, -0.8), (-waist - 0.01, -0.8)]
    return [(outline, 0.0), (band, -0.2)]


def _dress(rng: random.Random) -> Outline:
    chest = rng.uniform(0.26, 0.34)
    waist_y = rng.uniform(-0.2, -0.05)
    waist = chest - rng.uniform(0.02, 0.07)
    flare = rng.uniform(0.8, 1.0)
    neck = rng.uniform(0.08, 0.16)
    outline: list[Point] = [(-chest, -0.62), (-neck, -0.62), (0.0, -0.62 + rng.uniform(0.08, 0.2)), (neck, -0.62)]
    outline += [(chest, -0.62), (waist, waist_y)]
    hem_points = 7
    for i in range(hem_points + 1):  # a slightly wavy hem
        x = flare - 2 * flare * i / hem_points
        outline.append((x, 0.95 + rng.uniform(-0.03, 0.03)))
    outline.append((-waist, waist_y))
    strap_width = rng.uniform(0.05, 0.09)
    parts: Outline = [(outline, 0.0)]
    for side in (-1, 1):
        x = side * (chest - 0.06)
        parts.append(([(x - strap_width / 2, -0.62), (x + strap_width / 2, -0.62),
                       (x + strap_width / 2, -0.95), (x - strap_width / 2, -0.95)], 0.0))
    if rng.random() < 0.6:  # a belt
        parts.append(([(-waist, waist_y - 0.04), (waist, waist_y - 0.04), (waist, waist_y + 0.04),
                       (-waist, waist_y + 0.04)], rng.choice([-0.25, 0.2])))
    return parts


def _towel(rng: random.Random) -> Outline:
    # lying flat the long way across, with a woven band and a fringe at both short ends
    half_w = 0.95
    half_h = half_w / rng.uniform(1.3, 1.8)
    outline = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
    parts: Outline = [(outline, 0.0)]
    shade = rng.choice([-0.3, -0.2, 0.25])
    band_at = rng.uniform(0.62, 0.75)
    band = rng.uniform(0.06, 0.1)
    for side in (-1, 1):
        x0, x1 = side * band_at, side * (band_at + band)
        parts.append(([(x0, -half_h), (x1, -half_h), (x1, half_h), (x0, half_h)], shade))
        fringe = [(side * (half_w - 0.06), -half_h), (side * half_w, -half_h), (side * half_w, half_h),
                  (side * (half_w - 0.06), half_h)]
        parts.append((fringe, 0.3))
    return parts


def _sock(rng: random.Random) -> Outline:
    half = rng.uniform(0.15, 0.2)
    ankle = rng.uniform(0.25, 0.45)
    toe = rng.uniform(0.65, 0.85)
    foot = rng.uniform(0.3, 0.38)
    outline: list[Point] = [(-half, -0.92), (half, -0.92), (half, ankle)]
    outline += [(toe - 0.1, ankle + 0.02), (toe + 0.02, ankle + foot * 0.2), (toe + 0.06, ankle + foot * 0.55),
                (toe, ankle + foot * 0.9), (toe - 0.12, ankle + foot)]
    heel = [(-half + 0.12 * math.cos(a), ankle + foot - 0.2 + 0.2 * math.sin(a))
            for a in (math.radians(d) for d in range(90, 181, 30))]
    outline += [(0.0, ankle + foot), *heel]
    cuff = [(-half, -0.92), (half, -0.92), (half, -0.74), (-half, -0.74)]
    parts: Outline = [(outline, 0.0), (cuff, rng.choice([-0.2, 0.2]))]
    if rng.random() < 0.5:  # a toe in another shade
        parts.append(([(toe - 0.14, ankle), (toe + 0.06, ankle + foot * 0.3), (toe + 0.06, ankle + foot * 0.7),
                       (toe - 0.14, ankle + foot)], rng.choice([-0.25, 0.25])))
    return parts


GARMENT_SHAPES: dict[str, Callable[[random.Random], Outline]] = {
    "shirt": _shirt,
    "trousers": _trousers,
    "dress": _dress,
    "towel": _towel,
    "sock": _sock,
}


def _garment_mask(
    outline: Outline, size: int, rng: random.Random
) -> tuple[Image.Image, list[tuple[Image.Image, float]]]:
    """Place the outline at a random scale, rotation, flip and position; rasterise it."""
    scale = size * rng.uniform(0.3, 0.42)  # half the garment's height, in pixels
    angle = math.radians(rng.uniform(-30, 30))
    flip = rng.choice([-1, 1])
    margin = scale * 0.9
    cx = rng.uniform(min(margin, size / 2), max(size - margin, size / 2))
    cy = rng.uniform(min(margin, size / 2), max(size - margin, size / 2))
    cos, sin = math.cos(angle), math.sin(angle)

    def place(points: list[Point]) -> list[Point]:
        return [(cx + scale * (flip * x * cos - y * sin), cy + scale * (flip * x * sin + y * cos)) for x, y in points]

    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    details = []
    for points, shade in outline:
        if shade == 0.0:
            draw.polygon(place(points), fill=255)
    for points, shade in outline:
        if shade != 0.0:
            detail = Image.new("L", (size, size), 0)
            ImageDraw.Draw(detail).polygon(place(points), fill=255)
            details.append((ImageChops.multiply(detail, mask), shade))
    return mask, details


# --- surfaces ---------------------------------------------------------------------------


def _background(size: int, rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    kind = rng.choice(["wood", "tiles", "sheet", "concrete"])
    yy, xx = _grid(size)
    if kind == "wood":
        base = np.array([rng.uniform(150, 205), rng.uniform(110, 150), rng.uniform(70, 100)], np.float32)
        grain = np.sin((yy * rng.uniform(20, 45) + np.sin(xx * rng.uniform(3, 8)) * 0.8) * math.pi)
        light = 1.0 + 0.08 * grain[..., None]
    elif kind == "tiles":
        grey = rng.uniform(170, 235)
        base = np.array([grey, grey, grey + rng.uniform(-10, 10)], np.float32)
        tiles = rng.choice([3, 4, 5])
        grout = ((xx * tiles) % 1 < 0.03) | ((yy * tiles) % 1 < 0.03)
        light = np.where(grout, 0.75, 1.0)[..., None].astype(np.float32)
    elif kind == "sheet":
        hue = [rng.uniform(170, 245) for _ in range(3)]
        base = np.array(hue, np.float32)
        light = (1.0 + 0.04 * np.sin((xx + yy) * rng.uniform(6, 14) * math.pi))[..., None]
    else:
        grey = rng.uniform(110, 170)
        base = np.array([grey, grey - 4, grey - 8], np.float32)
        light = np.ones((size, size, 1), np.float32)
    gradient = 1.0 + rng.uniform(-0.15, 0.15) * (xx - 0.5) + rng.uniform(-0.15, 0.15) * (yy - 0.5)
    pixels = base * light * gradient[..., None] + _noise(np_rng, (size, size, 3), rng.uniform(3, 9))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates scaled to [0, 1): (rows, columns)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def _noise(np_rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian noise: a random window of a fixed noise field (drawing fresh normals is slow)."""
    height, width, channels = shape
    field = _noise_field(height + 64, width + 64)
    top, left = (int(v) for v in np_rng.integers(0, 64, 2))
    window = field[top:top + height, left:left + width]
    if np_rng.random() < 0.5:
        window = window[::-1]
    return window * np.float32(sigma)


@functools.cache
def _noise_field(height: int, width: int) -> np.ndarray:
    field = np.random.default_rng(20240601).standard_normal((height, width, 3), dtype=np.float32)
    field.setflags(write=False)
    return field


def _fabric_colour(rng: random.Random, background: Image.Image) -> tuple[int, int, int]:
    """A random fabric colour that stands out from the background (so holes are visible)."""
    behind = np.asarray(background.resize((1, 1), Image.Resampling.BOX), np.float32).reshape(3)
    for _ in range(50):
        colour = np.array([rng.uniform(0, 255) for _ in range(3)], np.float32)
        brightest = colour.max()
        if brightest < 115:  # keep fabrics light enough for a stain to show
            colour *= 115 / max(brightest, 1)
        if np.abs(colour - behind).sum() > 150:
            break
    return tuple(int(c) for c in colour)


def _fabric(size: int, colour: tuple[int, int, int], rng: random.Random, np_rng: np.random.Generator) -> Image.Image:
    yy, xx = _grid(size)
    pattern = rng.choice(["plain", "plain", "stripes", "checks"])
    light = np.ones((size, size), np.float32)
    if pattern == "stripes":
        light = np.where((xx * rng.uniform(8, 16)) % 1 < 0.3, 0.88, 1.0).astype(np.float32)
    elif pattern == "checks":
        period = rng.uniform(6, 12)
        light = np.where(((xx * period) % 1 < 0.5) ^ ((yy * period) % 1 < 0.5), 0.9, 1.0).astype(np.float32)
    weave = _noise(np_rng, (size, size, 3), rng.uniform(4, 10))
    pixels = np.array(colour, np.float32) * light[..., None] + weave
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _shade(image: Image.Image, amount: float) -> Image.Image:
    if amount < 0:
        return Image.blend(image, Image.new("RGB", image.size, (0, 0, 0)), -amount)
    return Image.blend(image, Image.new("RGB", image.size, (255, 255, 255)), amount)


def _drop_shadow(background: Image.Image, mask: Image.Image, size: int) -> Image.Image:
    shift = max(1, size // 60)
    shadow = ImageChops.offset(mask, shift, shift).filter(ImageFilter.GaussianBlur(size / 80))
    shadow = shadow.point(lambda v: v * 0.35)
    return Image.composite(_shade(background, -0.9), background, shadow)


def _camera(image: Image.Image, np_rng: np.random.Generator, rng: random.Random) -> Image.Image:
    """Exposure and sensor noise, and now and then a little blur."""
    pixels = np.asarray(image, np.float32) * rng.uniform(0.85, 1.12)
    pixels += _noise(np_rng, pixels.shape, rng.uniform(1, 5))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.25:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    return image


# --- conditions -------------------------------------------------------------------------


def _point_on(mask: Image.Image, rng: random.Random, inset: int) -> tuple[float, float]:
    """A random point well inside the garment (`inset` pixels from its edge if possible)."""
    inner = _erode(mask, inset) if inset else mask
    pixels = np.flatnonzero(np.asarray(inner) > 128)
    if pixels.size == 0:
        pixels = np.flatnonzero(np.asarray(mask) > 128)
    index = int(pixels[rng.randrange(pixels.size)])
    return float(index % mask.width), float(index // mask.width)


def _erode(mask: Image.Image, radius: int) -> Image.Image:
    """Shrink a mask by about `radius` pixels (a box blur and a threshold: fast, unlike MinFilter)."""
    return mask.filter(ImageFilter.BoxBlur(radius)).point(lambda v: 255 if v > 250 else 0)


def _dilate(mask: Image.Image, radius: int) -> Image.Image:
    """Grow a mask by about `radius` pixels."""
    return mask.filter(ImageFilter.BoxBlur(radius)).point(lambda v: 255 if v > 5 else 0)


def _blob(centre: tuple[float, float], radius: float, rng: random.Random, *, jagged: float, stretch: float = 1.0):
    """An irregular closed polygon around `centre`; `jagged` is how much its radius varies."""
    vertices = rng.randint(12, 22)
    turn = rng.uniform(0, math.pi)
    points = []
    for i in range(vertices):
        a = 2 * math.pi * i / vertices + rng.uniform(-0.15, 0.15)
        r = radius * (1 + rng.uniform(-jagged, jagged))
        x, y = r * math.cos(a) * stretch, r * math.sin(a) / stretch
        points.append((centre[0] + x * math.cos(turn) - y * math.sin(turn),
                       centre[1] + x * math.sin(turn) + y * math.cos(turn)))
    return points


def _add_stains(fabric: Image.Image, mask: Image.Image, size: int, rng: random.Random) -> Image.Image:
    stains = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(stains)
    for _ in range(rng.choice([1, 2, 2, 3])):
        radius = size * rng.uniform(0.06, 0.1)
        centre = _point_on(mask, rng, int(radius * 0.6))
        draw.polygon(_blob(centre, radius, rng, jagged=0.3, stretch=rng.uniform(1.0, 1.6)), fill=255)
        for _ in range(rng.randint(1, 4)):  # splashes around it
            r = radius * rng.uniform(0.15, 0.35)
            x = centre[0] + rng.uniform(-1.5, 1.5) * radius
            y = centre[1] + rng.uniform(-1.5, 1.5) * radius
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    stains = ImageChops.multiply(stains, mask)
    # a dried stain is darkest at its rim (the coffee-ring effect)
    ring = ImageChops.subtract(stains, _erode(stains, max(1, size // 70)))
    stains = stains.filter(ImageFilter.GaussianBlur(size / rng.uniform(150, 250)))
    colour = rng.choice(STAIN_COLOURS)
    # the stain darkens the fabric and tints it brown; the weave still shows through
    tinted = ImageChops.multiply(fabric, Image.new("RGB", fabric.size, tuple(min(255, c + 40) for c in colour)))
    stained = Image.composite(tinted, fabric, stains.point(lambda v: int(v * rng.uniform(0.75, 0.95))))
    return Image.composite(_shade(tinted, -0.3), stained, ring.point(lambda v: int(v * 0.6)))


def _add_tears(picture: Image.Image, background: Image.Image, mask: Image.Image, fabric_rgb, size: int,
               rng: random.Random) -> Image.Image:
    holes = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(holes)
    threads = []
    for _ in range(rng.choice([1, 2, 2])):
        radius = size * rng.uniform(0.05, 0.09)
        centre = _point_on(mask, rng, int(radius))
        points = _blob(centre, radius, rng, jagged=0.55, stretch=rng.uniform(1.0, 2.2))
        draw.polygon(points, fill=255)
        threads.extend(points)
    if rng.random() < 0.6:  # a jagged slit
        x, y = _point_on(mask, rng, size // 20)
        heading = rng.uniform(0, 2 * math.pi)
        line = [(x, y)]
        for _ in range(rng.randint(4, 8)):
            heading += rng.uniform(-0.9, 0.9)
            step = size * rng.uniform(0.02, 0.04)
            x, y = x + step * math.cos(heading), y + step * math.sin(heading)
            line.append((x, y))
        draw.line(line, fill=255, width=max(2, size // 70), joint="curve")
        threads.extend(line)
    holes = ImageChops.multiply(holes, _erode(mask, 1))
    # a frayed rim: loose, lighter threads around each hole
    rim = ImageChops.subtract(_dilate(holes, max(1, size // 100)), holes)
    rim = ImageChops.multiply(rim, mask)
    fray = tuple(min(255, int(c * 0.5 + 140)) for c in fabric_rgb)
    picture = Image.composite(Image.new("RGB", picture.size, fray), picture, rim)
    thread_draw = ImageDraw.Draw(picture)
    for x, y in rng.sample(threads, min(len(threads), 8)):
        a = rng.uniform(0, 2 * math.pi)
        length = size * rng.uniform(0.01, 0.025)
        thread_draw.line((x, y, x + length * math.cos(a), y + length * math.sin(a)), fill=fray, width=1)
    # the hole itself: the surface underneath, in the garment's shadow
    return Image.composite(_shade(background, -0.25), picture, holes)
