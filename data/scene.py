"""Draws one synthetic dash-cam frame of a driver with OpenCV.

The State Farm camera sits on the passenger side and looks at the driver, who faces
left. Every frame is laid out in a 640x480 design frame and mapped to pixels by one
affine transform (the driver's camera mounting, a little per-frame shake, the output
size), so every size and every camera offset uses the same geometry.

What a class looks like is carried by large shapes that survive a 10x downscale to
64x48: where the two arms and hands are, what is held (phone, cup) and where, and which
way the head faces. What a driver looks like (skin, hair, clothes, seat, interior,
lighting, camera mounting, sleeves, glasses, build, sensor noise) is drawn from the
driver's own seed, so a model has to learn the pose, not the person.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

import cv2
import numpy as np

DESIGN_WIDTH, DESIGN_HEIGHT = 640, 480
CLASSES = [f"c{index}" for index in range(10)]
CLASS_DESCRIPTIONS = {
    "c0": "normal driving",
    "c1": "texting - right",
    "c2": "talking on the phone - right",
    "c3": "texting - left",
    "c4": "talking on the phone - left",
    "c5": "operating the radio",
    "c6": "drinking",
    "c7": "reaching behind",
    "c8": "hair and makeup",
    "c9": "talking to passenger",
}

Color = tuple[int, int, int]  # BGR, as OpenCV draws
Point = tuple[float, float]  # design-frame pixels

_SKIN = [(203, 224, 255), (173, 205, 241), (140, 180, 224), (110, 150, 198), (80, 115, 165), (55, 80, 120), (40, 60, 90)]
_HAIR = [(20, 20, 20), (25, 40, 60), (30, 55, 95), (40, 40, 45), (50, 80, 120), (15, 25, 40)]
_SEATS = [(35, 35, 35), (60, 60, 65), (110, 130, 150), (40, 60, 90), (90, 90, 90), (70, 50, 40)]
_CUPS = [(240, 240, 240), (40, 40, 200), (30, 70, 120), (60, 160, 60), (200, 120, 40), (0, 200, 230)]


class Head(Enum):
    """Which way the driver's head faces (the camera sees the driver's right side)."""

    FORWARD = "forward"  # profile, looking at the road
    DOWN = "down"  # profile, looking down at a phone
    TO_CAMERA = "to_camera"  # frontal: talking to the passenger
    BACK = "back"  # back of the head: looking behind


@dataclass(frozen=True)
class DriverLook:
    """Everything about one driver and their car that does not depend on the class."""

    skin: Color
    hair: Color
    clothes: Color
    seat: Color
    interior: Color
    window: Color
    display: Color
    short_sleeves: bool
    glasses: bool
    body_scale: float
    head_scale: float
    shift: Point  # camera mounting offset, design px
    zoom: float
    tilt_degrees: float
    gain: float  # lighting
    tint: tuple[float, float, float]
    noise: float  # sensor noise sigma, grey levels
    jpeg_quality: int


@dataclass(frozen=True)
class Pose:
    """Where the limbs and head are for one frame, in design coordinates."""

    near_hand: Point  # the driver's right hand, nearest the camera
    near_elbow: Point
    far_hand: Point  # the left hand, partly hidden behind the body
    far_elbow: Point
    head: Head
    head_offset: Point
    torso_shift: float
    held: str | None  # "phone_text", "phone_ear", "cup" or None
    held_by_far_hand: bool
    far_hand_in_front: bool  # the far arm crosses in front of the face (left ear)


def driver_look(seed: int, driver: int) -> DriverLook:
    """The look of driver number `driver` of the dataset with seed `seed` (deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, driver]))

    def jitter(color: Color, amount: int) -> Color:
        return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in color)  # type: ignore[return-value]

    hue = int(rng.integers(0, 180))
    clothes_hsv = np.uint8([[[hue, rng.integers(40, 255), rng.integers(50, 240)]]])
    clothes = tuple(int(c) for c in cv2.cvtColor(clothes_hsv, cv2.COLOR_HSV2BGR)[0, 0])
    return DriverLook(
        skin=jitter(_SKIN[rng.integers(len(_SKIN))], 12),
        hair=jitter(_HAIR[rng.integers(len(_HAIR))], 10),
        clothes=clothes,  # type: ignore[arg-type]
        seat=jitter(_SEATS[rng.integers(len(_SEATS))], 15),
        interior=jitter((70, 70, 75), 30),
        window=jitter((210, 200, 190), 40),
        display=jitter(((60, 220, 60), (230, 160, 40), (40, 120, 240))[rng.integers(3)], 20),
        short_sleeves=bool(rng.random() < 0.35),
        glasses=bool(rng.random() < 0.3),
        body_scale=float(rng.uniform(0.9, 1.12)),
        head_scale=float(rng.uniform(0.9, 1.1)),
        shift=(float(rng.uniform(-30, 30)), float(rng.uniform(-25, 25))),
        zoom=float(rng.uniform(0.9, 1.1)),
        tilt_degrees=float(rng.uniform(-4, 4)),
        gain=float(rng.uniform(0.65, 1.25)),
        tint=tuple(float(t) for t in rng.uniform(-18, 18, 3)),  # type: ignore[arg-type]
        noise=float(rng.uniform(2, 9)),
        jpeg_quality=int(rng.integers(85, 96)),
    )


# ---------------------------------------------------------------------------------------
# poses

NEAR_SHOULDER: Point = (405, 250)
FAR_SHOULDER: Point = (335, 240)
WHEEL_CENTER: Point = (160, 270)
WHEEL_AXES = (45, 108)
HEAD_CENTER: Point = (357, 152)


def _on_wheel(degrees: float) -> Point:
    """A point on the wheel rim; 90 is the top, 270 the bottom, 0 the side nearest the driver."""
    radians = math.radians(degrees)
    return (WHEEL_CENTER[0] + WHEEL_AXES[0] * math.cos(radians), WHEEL_CENTER[1] - WHEEL_AXES[1] * math.sin(radians))


def class_pose(class_index: int, rng: np.random.Generator) -> Pose:
    """The pose for a class, with the natural variation of a real person doing it."""
    far_on_wheel = _on_wheel(rng.uniform(55, 130))
    near_on_wheel = _on_wheel(rng.uniform(-60, 10))
    wheel = {
        "near_hand": near_on_wheel,
        "near_elbow": (300, 372),
        "far_hand": far_on_wheel,
        "far_elbow": (258, 312),
    }
    common = {"head": Head.FORWARD, "head_offset": (0.0, 0.0), "torso_shift": 0.0, "held": None,
              "held_by_far_hand": False, "far_hand_in_front": False}
    poses: dict[int, dict] = {
        0: {},
        1: {"near_hand": (330, 362), "near_elbow": (395, 410), "head": Head.DOWN, "head_offset": (-6, 14),
            "held": "phone_text"},
        2: {"near_hand": (390, 168), "near_elbow": (458, 300), "held": "phone_ear"},
        3: {"far_hand": (228, 245), "far_elbow": (285, 335), "head": Head.DOWN, "head_offset": (-8, 12),
            "held": "phone_text", "held_by_far_hand": True},
        4: {"far_hand": (318, 160), "far_elbow": (262, 262), "held": "phone_ear", "held_by_far_hand": True,
            "far_hand_in_front": True},
        5: {"near_hand": (548, 346), "near_elbow": (470, 365), "head_offset": (6, 6)},
        6: {"near_hand": (336, 196), "near_elbow": (425, 332), "head_offset": (4, -5), "held": "cup"},
        7: {"near_hand": (578, 132), "near_elbow": (500, 182), "head": Head.BACK, "head_offset": (16, 0),
            "torso_shift": 22.0},
        8: {"near_hand": (392, 92), "near_elbow": (472, 160)},
        9: {"head": Head.TO_CAMERA, "head_offset": (16, 2), "torso_shift": 8.0},
    }
    spec = {**common, **wheel, **poses[class_index]}

    def wobble(point: Point, sigma: float = 7.0) -> Point:
        return (point[0] + rng.normal(0, sigma), point[1] + rng.normal(0, sigma))

    return Pose(
        near_hand=wobble(spec["near_hand"]),
        near_elbow=wobble(spec["near_elbow"], 10),
        far_hand=wobble(spec["far_hand"]),
        far_elbow=wobble(spec["far_elbow"], 10),
        head=spec["head"],
        head_offset=wobble(spec["head_offset"], 3),
        torso_shift=spec["torso_shift"] + rng.normal(0, 3),
        held=spec["held"],
        held_by_far_hand=spec["held_by_far_hand"],
        far_hand_in_front=spec["far_hand_in_front"],
    )


# ---------------------------------------------------------------------------------------
# drawing


class _Painter:
    """OpenCV drawing in design coordinates through one affine map (rotation, zoom, shift)."""

    def __init__(self, image: np.ndarray, matrix: np.ndarray, scale: float) -> None:
        self.image = image
        self.matrix = matrix
        self.scale = scale  # design px -> output px, for radii and thicknesses
        self.rotation = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))

    def point(self, p: Point) -> tuple[int, int]:
        x = self.matrix[0, 0] * p[0] + self.matrix[0, 1] * p[1] + self.matrix[0, 2]
        y = self.matrix[1, 0] * p[0] + self.matrix[1, 1] * p[1] + self.matrix[1, 2]
        return int(round(x)), int(round(y))

    def length(self, value: float) -> int:
        return max(1, int(round(value * self.scale)))

    def polygon(self, points: list[Point], color: Color) -> None:
        cv2.fillPoly(self.image, [np.array([self.point(p) for p in points], np.int32)], color, cv2.LINE_AA)

    def line(self, a: Point, b: Point, color: Color, thickness: float) -> None:
        cv2.line(self.image, self.point(a), self.point(b), color, self.length(thickness), cv2.LINE_AA)

    def circle(self, center: Point, radius: float, color: Color, thickness: float = -1) -> None:
        width = -1 if thickness < 0 else self.length(thickness)
        cv2.circle(self.image, self.point(center), self.length(radius), color, width, cv2.LINE_AA)

    def ellipse(self, center: Point, axes: tuple[float, float], angle: float, color: Color,
                thickness: float = -1, start: float = 0, end: float = 360) -> None:
        width = -1 if thickness < 0 else self.length(thickness)
        cv2.ellipse(self.image, self.point(center), (self.length(axes[0]), self.length(axes[1])),
                    angle + self.rotation, start, end, color, width, cv2.LINE_AA)

    def box(self, center: Point, size: tuple[float, float], angle: float, color: Color) -> None:
        """A filled rectangle of `size` turned by `angle` degrees about its centre."""
        radians = math.radians(angle)
        cos, sin = math.cos(radians), math.sin(radians)
        half_w, half_h = size[0] / 2, size[1] / 2
        corners = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        self.polygon([(center[0] + x * cos - y * sin, center[1] + x * sin + y * cos) for x, y in corners], color)


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, c * factor)) for c in color)  # type: ignore[return-value]


@lru_cache(maxsize=8)
def _lighting_field(width: int, height: int) -> np.ndarray:
    """Per-pixel brightness: window light from the upper left, darker footwell."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    field = 1.15 - 0.35 * (xs / width) * 0.5 - 0.3 * (ys / height)
    return field.astype(np.float32)[:, :, None]


def render(look: DriverLook, class_index: int, rng: np.random.Generator,
           width: int = DESIGN_WIDTH, height: int = DESIGN_HEIGHT) -> np.ndarray:
    """One BGR uint8 frame of `look`'s driver doing class `class_index`."""
    pose = class_pose(class_index, rng)
    scale = min(width / DESIGN_WIDTH, height / DESIGN_HEIGHT)
    shake = rng.normal(0, 4, 2)
    matrix = cv2.getRotationMatrix2D((DESIGN_WIDTH / 2, DESIGN_HEIGHT / 2),
                                     look.tilt_degrees + rng.normal(0, 0.7), look.zoom)
    matrix[:, 2] += (look.shift[0] + shake[0], look.shift[1] + shake[1])
    matrix = np.diag([width / DESIGN_WIDTH, height / DESIGN_HEIGHT]) @ matrix
    image = np.empty((height, width, 3), np.uint8)
    image[:] = look.interior
    paint = _Painter(image, matrix, scale * look.zoom)

    _draw_car(paint, look, rng)
    body = look.body_scale
    shift = pose.torso_shift
    near_shoulder = (NEAR_SHOULDER[0] + shift, NEAR_SHOULDER[1])
    far_shoulder = (FAR_SHOULDER[0] + shift * 0.6, FAR_SHOULDER[1])
    if not pose.far_hand_in_front:
        _draw_arm(paint, look, far_shoulder, pose.far_elbow, pose.far_hand, 26 * body, far=True)
    _draw_torso(paint, look, near_shoulder, far_shoulder, body)
    head_center = (HEAD_CENTER[0] + pose.head_offset[0] + shift * 0.5, HEAD_CENTER[1] + pose.head_offset[1])
    _draw_head(paint, look, head_center, pose.head)
    if pose.far_hand_in_front:
        _draw_arm(paint, look, far_shoulder, pose.far_elbow, pose.far_hand, 26 * body, far=True)
    if pose.held and pose.held_by_far_hand:
        _draw_held(paint, pose.held, pose.far_hand, rng)
    _draw_arm(paint, look, near_shoulder, pose.near_elbow, pose.near_hand, 32 * body, far=False)
    if pose.held and not pose.held_by_far_hand:
        _draw_held(paint, pose.held, pose.near_hand, rng)
    return _expose(image, look, rng)


def _draw_car(paint: _Painter, look: DriverLook, rng: np.random.Generator) -> None:
    """Window with passing scenery, rear seat, driver's seat, dashboard, wheel, radio."""
    paint.polygon([(-60, -60), (300, -60), (290, 190), (-60, 215)], look.window)
    for _ in range(int(rng.integers(0, 4))):  # scenery outside changes from frame to frame
        x, y = rng.uniform(-40, 270), rng.uniform(40, 190)
        tone = tuple(int(v) for v in rng.integers(40, 200, 3))
        paint.ellipse((x, y), (rng.uniform(10, 40), rng.uniform(10, 50)), 0, tone)  # type: ignore[arg-type]
    paint.line((300, -60), (288, 200), _shade(look.interior, 0.6), 18)  # door pillar
    paint.polygon([(480, 40), (700, 20), (700, 300), (490, 300)], _shade(look.seat, 0.8))  # rear seat
    paint.polygon([(325, 190), (480, 175), (500, 540), (320, 540)], look.seat)  # driver's seat back
    paint.ellipse((420, 120), (48, 36), 0, _shade(look.seat, 1.1))  # headrest
    paint.polygon([(-60, 335), (250, 355), (265, 540), (-60, 540)], _shade(look.interior, 0.55))  # dashboard
    paint.ellipse(WHEEL_CENTER, WHEEL_AXES, 0, (30, 30, 32), 15)
    paint.line(WHEEL_CENTER, (235, 300), (30, 30, 32), 16)  # steering column
    paint.polygon([(500, 310), (700, 300), (700, 540), (520, 540)], _shade(look.interior, 0.75))  # console
    paint.box((560, 340), (90, 46), -4, (25, 25, 25))  # radio
    paint.box((556, 333), (52, 18), -4, look.display)


def _draw_torso(paint: _Painter, look: DriverLook, near: Point, far: Point, body: float) -> None:
    half = 80 * body
    paint.polygon([(far[0] - 10, far[1] - 8), (near[0] + 12, near[1] - 6), (near[0] + half * 0.7, 540),
                   (far[0] - half * 0.55, 540)], look.clothes)
    neck_base = ((near[0] + far[0]) / 2, (near[1] + far[1]) / 2 - 20)
    paint.line(neck_base, (neck_base[0] - 4, neck_base[1] - 45), _shade(look.skin, 0.9), 34 * body)


def _draw_arm(paint: _Painter, look: DriverLook, shoulder: Point, elbow: Point, hand: Point,
              width: float, far: bool) -> None:
    sleeve = _shade(look.clothes, 0.8 if far else 1.0)
    forearm = _shade(look.skin, 0.85 if far else 1.0) if look.short_sleeves else sleeve
    paint.line(shoulder, elbow, sleeve, width)
    paint.line(elbow, hand, forearm, width * 0.85)
    paint.circle(hand, width * 0.62, _shade(look.skin, 0.9 if far else 1.05))


def _draw_head(paint: _Painter, look: DriverLook, center: Point, head: Head) -> None:
    """Profile faces left (the road); TO_CAMERA is frontal; BACK shows mostly hair."""
    size = 50 * look.head_scale
    cx, cy = center
    skin, hair, dark = look.skin, look.hair, (25, 25, 30)
    if head is Head.BACK:
        paint.ellipse(center, (size * 0.88, size), 10, skin)
        paint.ellipse((cx + 6, cy - 4), (size * 0.9, size * 0.98), 10, hair)
        paint.ellipse((cx + size * 0.8, cy + 2), (8, 14), 0, _shade(skin, 0.9))  # ear
        return
    if head is Head.TO_CAMERA:
        paint.ellipse(center, (size * 0.82, size), 0, skin)
        paint.ellipse((cx, cy - size * 0.55), (size * 0.85, size * 0.5), 0, hair, start=180, end=360)
        for side in (-1, 1):
            paint.circle((cx + side * size * 0.33, cy - size * 0.08), size * 0.11, dark)
            if look.glasses:
                paint.circle((cx + side * size * 0.33, cy - size * 0.08), size * 0.22, dark, 3)
        paint.ellipse((cx, cy + size * 0.5), (size * 0.3, size * 0.14), 0, (40, 30, 120))  # open mouth
        return
    tilt = 18 if head is Head.DOWN else 0
    paint.ellipse(center, (size * 0.85, size), tilt, skin)
    paint.ellipse((cx + size * 0.3, cy - size * 0.25), (size * 0.72, size * 0.8), tilt, hair)  # back of the head
    nose_y = cy + (8 if head is Head.DOWN else 0)
    paint.polygon([(cx - size * 0.8, nose_y - 8), (cx - size * 1.02, nose_y + 10), (cx - size * 0.78, nose_y + 14)], skin)
    eye = (cx - size * 0.5, cy - size * 0.12 + (10 if head is Head.DOWN else 0))
    paint.circle(eye, size * 0.1, dark)
    if look.glasses:
        paint.circle(eye, size * 0.2, dark, 3)
        paint.line((eye[0] + size * 0.2, eye[1]), (cx + size * 0.25, cy - size * 0.1), dark, 3)
    paint.ellipse((cx + size * 0.2, cy + 4), (9, 15), tilt, _shade(skin, 0.85))  # ear


def _draw_held(paint: _Painter, held: str, hand: Point, rng: np.random.Generator) -> None:
    if held == "phone_text":
        angle = rng.uniform(-30, 10)
        paint.box(hand, (40, 62), angle, (20, 20, 20))
        paint.box((hand[0], hand[1] - 2), (32, 48), angle, (235, 200, 150))  # lit screen
    elif held == "phone_ear":
        angle = rng.uniform(-15, 15)
        paint.box((hand[0] - 4, hand[1] - 6), (22, 64), angle, (20, 20, 20))
    elif held == "cup":
        color = _CUPS[int(rng.integers(len(_CUPS)))]
        angle = rng.uniform(-40, -15)
        paint.box((hand[0] - 10, hand[1] - 12), (40, 64), angle, color)
        paint.box((hand[0] - 20, hand[1] - 38), (44, 10), angle, _shade(color, 0.7))  # lid


def _expose(image: np.ndarray, look: DriverLook, rng: np.random.Generator) -> np.ndarray:
    """Lighting, a sun stripe now and then, and sensor noise."""
    height, width = image.shape[:2]
    light = _lighting_field(width, height) * np.float32(look.gain * rng.uniform(0.9, 1.1))
    frame = image.astype(np.float32) * light
    frame += np.asarray(look.tint, np.float32)
    if rng.random() < 0.3:  # a band of sunlight or shadow across the cabin
        mask = np.zeros((height, width), np.uint8)
        x0 = int(rng.uniform(0, width))
        band = int(rng.uniform(0.08, 0.2) * width)
        cv2.fillPoly(mask, [np.array([(x0, 0), (x0 + band, 0), (x0 + band - width // 3, height),
                                      (x0 - width // 3, height)], np.int32)], 1)
        frame[mask.astype(bool)] *= np.float32(rng.choice([0.7, 1.25]))
    # noise at half resolution, upscaled: grainy like a cheap sensor and four times cheaper
    small = rng.standard_normal((height // 2 + 1, width // 2 + 1, 1), dtype=np.float32) * np.float32(look.noise)
    frame += cv2.resize(small, (width, height), interpolation=cv2.INTER_NEAREST)[:, :, None]
    return np.clip(frame, 0, 255).astype(np.uint8)
