"""Procedural street layout: road, sidewalks, buildings, vegetation, poles, and moving objects.

World frame (metres): X right, Y down, Z forward along the street, the road surface is Y = 0 and
the road's centre line is X = 0, so the first camera frame is (almost) the world frame shifted
up by the camera height. Cross-section of the street from the centre outwards on each side:

    | oncoming lane | parking strip | curb | sidewalk | terrain ... buildings ... forest belt
    X = 0 ........ lane_width ... road_half_width ...

Everything above the road is a small set of primitives (unit box, unit sphere, unit cylinder)
placed by an affine map `prim_from_parent` in a parent frame: the world for static scenery, an
object frame (origin on the ground under the object's centre, x right, y down, z heading) for
cars, pedestrians and cyclists, whose `world_from_object` per frame is a rigid motion.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional

import numpy as np

from tf_depthseg.data import datasets
from tf_depthseg.synthetic import noise

# Primitive kinds: a unit shape in its own frame, mapped into place by an affine transform.
KIND_GROUND = -1  # analytic road/sidewalk/curb/terrain; never in a primitive table
KIND_BOX = 0  # [-1, 1]^3
KIND_SPHERE = 1  # |p| <= 1 (ellipsoids through non-uniform scale)
KIND_CYLINDER = 2  # x^2 + z^2 <= 1, -1 <= y <= 1 (axis along local y)

# Materials (shaders in `shading.py`).
(M_SKY, M_ROAD, M_SIDEWALK, M_CURB, M_TERRAIN, M_FACADE, M_FOLIAGE, M_BARK, M_METAL, M_SIGN,
 M_TRAFFIC_LIGHT, M_PAINT, M_GLASS, M_TIRE, M_CLOTH, M_SKIN, M_FENCE, M_WALL) = range(18)
NUM_MATERIALS = 18

_LABEL = {name: datasets.cityscapes_label_id(name) for name in (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "bicycle")}
LABEL_IDS = _LABEL  # name -> Cityscapes label id of every class the generator draws
INSTANCE_LABEL_IDS = tuple(_LABEL[n] for n in ("person", "rider", "car", "bicycle"))

# KITTI's raw camera 02 (1242x375, fx = fy = 721.5377, cx = 609.5593, cy = 172.854), in
# resolution-free form: focal lengths as fractions of the image size and the principal point
# as a fraction of the extent [-0.5, size - 0.5] (half-pixel convention of
# `tf_depthseg.geometry.intrinsics`), so K scales exactly like `scale_intrinsics`.
KITTI_SIZE = (375, 1242)
KITTI_FX, KITTI_FY, KITTI_CX, KITTI_CY = 721.5377, 721.5377, 609.5593, 172.854


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Size, length and content of one synthetic drive. All distances in metres.

    Attributes:
      height, width: image size; intrinsics are KITTI's scaled to it.
      frames_per_drive: number of frames T.
      num_parked_cars, num_moving_cars, num_pedestrians, num_cyclists, num_trees, num_poles:
        object counts per drive (placed along the part of the street the camera sees).
      moving_pedestrian_fraction: share of pedestrians walking (the rest stand still).
      camera_height: camera above the road (KITTI: 1.65).
      speed: mean camera speed in metres per frame (KITTI: ~1 m at 10 Hz); each drive draws
        its speed within +-speed_jitter (relative).
      pitch_jitter_deg, roll_jitter_deg: amplitude of the smooth camera wobble.
      lateral_drift: amplitude of the smooth in-lane weaving that makes the camera turn.
      lane_width, parking_width, curb_height: street cross-section.
      view_ahead: distance from the last camera position to the street's end (a building
        across the street), so depth stays finite and mostly below ~100 m.
    """

    height: int = 128
    width: int = 416
    frames_per_drive: int = 30
    num_parked_cars: int = 8
    num_moving_cars: int = 4
    num_pedestrians: int = 6
    num_cyclists: int = 2
    num_trees: int = 10
    num_poles: int = 8
    moving_pedestrian_fraction: float = 0.7
    camera_height: float = 1.65
    speed: float = 1.0
    speed_jitter: float = 0.2
    pitch_jitter_deg: float = 1.0
    roll_jitter_deg: float = 0.7
    lateral_drift: float = 0.3
    lane_width: float = 3.5
    parking_width: float = 2.2
    curb_height: float = 0.12
    view_ahead: float = 65.0

    def __post_init__(self):
        if self.height < 8 or self.width < 8:
            raise ValueError(f"image size must be at least 8x8, got {self.height}x{self.width}")
        if self.frames_per_drive < 1:
            raise ValueError(f"frames_per_drive must be >= 1, got {self.frames_per_drive}")
        for name in ("num_parked_cars", "num_moving_cars", "num_pedestrians", "num_cyclists",
                     "num_trees", "num_poles"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.moving_pedestrian_fraction <= 1.0:
            raise ValueError("moving_pedestrian_fraction must be in [0, 1]")
        if not 0.5 <= self.camera_height <= 5.0:
            raise ValueError(f"camera_height must be in [0.5, 5] m, got {self.camera_height}")
        if self.speed < 0 or not 0 <= self.speed_jitter < 1:
            raise ValueError("speed must be >= 0 and speed_jitter in [0, 1)")
        if self.lateral_drift > 0.5:
            raise ValueError("lateral_drift above 0.5 m lets the camera hit cyclists")
        if self.view_ahead < 20:
            raise ValueError("view_ahead must be >= 20 m")


@dataclasses.dataclass
class ObjectTrack:
    """One object of the drive and its pose in every frame.

    Attributes:
      instance_id: Cityscapes-style id `label_id * 1000 + k` (k >= 1), as in `instance_ids`.
      label_id: Cityscapes label id (person 24, rider 25, car 26, bicycle 33).
      moving: False for parked cars and standing pedestrians (constant pose).
      world_from_object: float64 `[T, 4, 4]` rigid pose per frame (object frame: origin on the
        ground under the object's centre, x right, y down, z heading).
    """

    instance_id: int
    label_id: int
    moving: bool
    world_from_object: np.ndarray


@dataclasses.dataclass
class StreetGeometry:
    """Cross-section of the street (see module doc)."""

    lane_width: float
    road_half_width: float
    curb_height: float
    sidewalk_width: np.ndarray  # [2]: left (X < 0), right (X > 0)


@dataclasses.dataclass
class PrimitiveTable:
    """Primitives as parallel arrays (N rows).

    kind int8 `[N]`; prim_from_parent float64 `[N, 3, 4]` (unit-shape coords from parent
    coords, scale included); scale float64 `[N, 3]` half extents in metres; material int16;
    label uint8 (Cityscapes label id); instance int32 (0 = none); color_a, color_b float32
    `[N, 3]`; param float32 `[N, 4]` (material parameters); owner int32 (-1 = static world
    primitive, else index into `Scene.objects`).
    """

    kind: np.ndarray
    prim_from_parent: np.ndarray
    scale: np.ndarray
    material: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    param: np.ndarray
    owner: np.ndarray

    def __len__(self):
        return len(self.kind)


@dataclasses.dataclass
class Scene:
    """A laid-out drive: street, primitives, object tracks, camera path, texture lattice."""

    config: SceneConfig
    seed: int
    intrinsics: np.ndarray  # float64 [3, 3]
    world_from_camera: np.ndarray  # float64 [T, 4, 4]
    street: StreetGeometry
    prims: PrimitiveTable
    objects: List[ObjectTrack]
    noise_table: np.ndarray


def camera_intrinsics(height: int, width: int) -> np.ndarray:
    """KITTI's camera scaled to `height` x `width` (half-pixel convention), float64 `[3, 3]`.

    Equals `geometry.intrinsics.scale_intrinsics(K_kitti, width / 1242, height / 375)`; built
    here in numpy so the generator does not import TensorFlow (it runs in worker processes).
    """
    sx = width / KITTI_SIZE[1]
    sy = height / KITTI_SIZE[0]
    return np.array([[KITTI_FX * sx, 0.0, (KITTI_CX + 0.5) * sx - 0.5],
                     [0.0, KITTI_FY * sy, (KITTI_CY + 0.5) * sy - 0.5],
                     [0.0, 0.0, 1.0]])


def rot_x(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle):
    """Rotation about the (downward) Y axis; yaw `a` turns heading +Z to (sin a, 0, cos a)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle):
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rigid(rotation, translation) -> np.ndarray:
    """`[4, 4]` from a `[3, 3]` rotation and a translation."""
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = translation
    return out


# Axis-swapping rotation that turns a unit cylinder's y axis into the parent's x axis (wheels).
_Y_TO_X = rot_z(-math.pi / 2)


class _Builder:
    """Accumulates primitives, then freezes them into a PrimitiveTable."""

    def __init__(self):
        self.rows = []

    def add(self, kind, center, half, material, label, *, yaw=0.0, rotation=None,
            instance=0, color_a=(0.5, 0.5, 0.5), color_b=(0.5, 0.5, 0.5),
            param=(0.0, 0.0, 0.0, 0.0), owner=-1):
        rot = rot_y(yaw) if rotation is None else rotation
        half = np.asarray(half, np.float64)
        # prim coords p = diag(1/half) R^T (x - center)
        linear = (rot.T / half[:, None])
        affine = np.concatenate([linear, -(linear @ np.asarray(center, np.float64))[:, None]], 1)
        self.rows.append((kind, affine, half, material, label, instance, color_a, color_b,
                          param, owner))

    def table(self) -> PrimitiveTable:
        cols = list(zip(*self.rows)) if self.rows else [[]] * 10
        n = len(self.rows)
        return PrimitiveTable(
            kind=np.array(cols[0], np.int8).reshape(n),
            prim_from_parent=np.array(cols[1], np.float64).reshape(n, 3, 4),
            scale=np.array(cols[2], np.float64).reshape(n, 3),
            material=np.array(cols[3], np.int16).reshape(n),
            label=np.array(cols[4], np.uint8).reshape(n),
            instance=np.array(cols[5], np.int32).reshape(n),
            color_a=np.array(cols[6], np.float32).reshape(n, 3),
            color_b=np.array(cols[7], np.float32).reshape(n, 3),
            param=np.array(cols[8], np.float32).reshape(n, 4),
            owner=np.array(cols[9], np.int32).reshape(n))


# Colour palettes (linear RGB in [0, 1]).
_FACADE_COLORS = np.array([
    (0.78, 0.72, 0.62), (0.62, 0.60, 0.58), (0.66, 0.36, 0.28), (0.85, 0.83, 0.78),
    (0.80, 0.70, 0.45), (0.55, 0.50, 0.46), (0.72, 0.55, 0.45), (0.70, 0.74, 0.76)])
_CAR_COLORS = np.array([
    (0.85, 0.85, 0.85), (0.08, 0.08, 0.09), (0.55, 0.56, 0.58), (0.60, 0.08, 0.06),
    (0.10, 0.20, 0.50), (0.12, 0.30, 0.18), (0.75, 0.65, 0.40), (0.30, 0.30, 0.33)])
_CLOTH_COLORS = np.array([
    (0.15, 0.15, 0.20), (0.60, 0.10, 0.10), (0.20, 0.30, 0.60), (0.80, 0.78, 0.70),
    (0.30, 0.45, 0.25), (0.45, 0.35, 0.25), (0.85, 0.60, 0.15), (0.35, 0.35, 0.38)])
_SKIN_COLORS = np.array([(0.90, 0.72, 0.60), (0.70, 0.50, 0.38), (0.45, 0.30, 0.22)])


def _pick(rng, palette, jitter=0.06):
    return np.clip(palette[rng.integers(len(palette))] + rng.uniform(-jitter, jitter, 3), 0, 1)


def _camera_path(config: SceneConfig, rng) -> np.ndarray:
    """world_from_camera `[T, 4, 4]`: forward drive with weaving, turns and pitch/roll wobble."""
    num = config.frames_per_drive
    frames = np.arange(num, dtype=np.float64)
    speed = config.speed * rng.uniform(1 - config.speed_jitter, 1 + config.speed_jitter)
    z = speed * frames
    wave = rng.uniform(50.0, 120.0)  # metres per weaving period
    phase = rng.uniform(0, 2 * math.pi)
    drift = config.lateral_drift * rng.uniform(0.5, 1.0)
    x = 0.5 * config.lane_width + drift * np.sin(2 * math.pi * z / wave + phase)
    heading = np.arctan(drift * 2 * math.pi / wave * np.cos(2 * math.pi * z / wave + phase))

    def wobble(amplitude):
        # Two incommensurate sines: smooth frame to frame, different per drive.
        w1, w2 = rng.uniform(0.15, 0.5), rng.uniform(0.5, 1.1)
        p1, p2 = rng.uniform(0, 2 * math.pi, 2)
        return amplitude * (0.65 * np.sin(w1 * frames + p1) + 0.35 * np.sin(w2 * frames + p2))

    pitch = wobble(math.radians(config.pitch_jitter_deg))
    roll = wobble(math.radians(config.roll_jitter_deg))
    yaw = heading + wobble(math.radians(0.3))
    bounce = wobble(0.015)
    poses = np.empty((num, 4, 4))
    for t in range(num):
        poses[t] = rigid(rot_y(yaw[t]) @ rot_x(pitch[t]) @ rot_z(roll[t]),
                         (x[t], -(config.camera_height + bounce[t]), z[t]))
    return poses


def _constant_track(num_frames, x, y, z, yaw):
    pose = rigid(rot_y(yaw), (x, y, z))
    return np.repeat(pose[None], num_frames, axis=0)


def _linear_track(num_frames, x, y, z0, yaw, speed):
    """Straight motion along the heading at `speed` m/frame (rigid, constant yaw)."""
    poses = _constant_track(num_frames, x, y, z0, yaw)
    t = np.arange(num_frames, dtype=np.float64)
    poses[:, 0, 3] += speed * math.sin(yaw) * t
    poses[:, 2, 3] += speed * math.cos(yaw) * t
    return poses


def _add_car(builder, rng, owner, instance):
    length = rng.uniform(3.9, 4.7)
    width = rng.uniform(1.65, 1.85)
    body_h = rng.uniform(0.55, 0.7)
    cabin_h = rng.uniform(0.42, 0.55)
    paint = _pick(rng, _CAR_COLORS, 0.04)
    car = LABEL_IDS["car"]
    clearance = 0.28
    common = dict(owner=owner, instance=instance)
    builder.add(KIND_BOX, (0, -(clearance + body_h / 2), 0), (width / 2, body_h / 2, length / 2),
                M_PAINT, car, color_a=paint, color_b=paint * 0.55, param=(rng.random(), 0, 0, 0),
                **common)
    # Underbody down to the road (dark, between the wheels): without it the road under the
    # car shows below the bumper and is farther than the car, unlike real (shadowed) cars.
    builder.add(KIND_BOX, (0, -clearance / 2 - 0.01, 0),
                (width / 2 - 0.2, clearance / 2 + 0.01, length / 2 - 0.35), M_TIRE, car,
                color_a=(0.05, 0.05, 0.05), color_b=(0.05, 0.05, 0.05), **common)
    cabin_len = length * rng.uniform(0.45, 0.55)
    builder.add(KIND_BOX, (0, -(clearance + body_h + cabin_h / 2), -0.08 * length),
                (width / 2 - 0.08, cabin_h / 2, cabin_len / 2), M_GLASS, car,
                color_a=paint, color_b=(0.10, 0.12, 0.16), **common)
    radius = 0.32
    for sx in (-1, 1):
        for sz in (-1, 1):
            builder.add(KIND_CYLINDER, (sx * (width / 2 - 0.08), -radius, sz * (length / 2 - 0.8)),
                        (radius, 0.11, radius), M_TIRE, car, rotation=_Y_TO_X,
                        color_a=(0.06, 0.06, 0.06), color_b=(0.45, 0.45, 0.47), **common)


def _add_person(builder, rng, owner, instance, label, height):
    """A standing/walking person of `height` (rigid; legs, torso, arms, head)."""
    cloth_top = _pick(rng, _CLOTH_COLORS)
    cloth_bottom = _pick(rng, _CLOTH_COLORS)
    skin = _pick(rng, _SKIN_COLORS, 0.03)
    leg = 0.47 * height
    torso = 0.32 * height
    common = dict(owner=owner, instance=instance)
    builder.add(KIND_BOX, (0, -leg / 2, 0), (0.16, leg / 2, 0.10), M_CLOTH, label,
                color_a=cloth_bottom, color_b=cloth_bottom * 0.6, **common)
    builder.add(KIND_BOX, (0, -(leg + torso / 2), 0), (0.21, torso / 2, 0.12), M_CLOTH, label,
                color_a=cloth_top, color_b=cloth_top * 0.6, **common)
    for sx in (-1, 1):
        builder.add(KIND_BOX, (sx * 0.26, -(leg + torso * 0.55), 0), (0.05, torso * 0.45, 0.06),
                    M_CLOTH, label, color_a=cloth_top, color_b=cloth_top * 0.6, **common)
    head = 0.065 * height
    builder.add(KIND_SPHERE, (0, -(leg + torso + 0.04 + head), 0), (head, head * 1.1, head),
                M_SKIN, label, color_a=skin, color_b=skin * 0.7, **common)


def _add_cyclist(builder, rng, owner_rider, owner_bike, rider_instance, bike_instance):
    bike = LABEL_IDS["bicycle"]
    frame_color = _pick(rng, _CAR_COLORS, 0.05)
    radius = 0.34
    common = dict(owner=owner_bike, instance=bike_instance)
    for sz in (-1, 1):
        builder.add(KIND_CYLINDER, (0, -radius, sz * 0.52), (radius, 0.035, radius), M_TIRE,
                    bike, rotation=_Y_TO_X, color_a=(0.05, 0.05, 0.05),
                    color_b=(0.6, 0.6, 0.62), **common)
    builder.add(KIND_BOX, (0, -0.58, 0), (0.035, 0.17, 0.42), M_PAINT, bike,
                color_a=frame_color, color_b=frame_color * 0.5, **common)
    builder.add(KIND_BOX, (0, -0.98, 0.42), (0.28, 0.03, 0.03), M_METAL, bike,
                color_a=(0.2, 0.2, 0.22), color_b=(0.1, 0.1, 0.1), **common)
    rider = LABEL_IDS["rider"]
    cloth = _pick(rng, _CLOTH_COLORS)
    skin = _pick(rng, _SKIN_COLORS, 0.03)
    common = dict(owner=owner_rider, instance=rider_instance)
    for sx in (-1, 1):
        builder.add(KIND_BOX, (sx * 0.13, -0.72, 0.05), (0.07, 0.26, 0.09), M_CLOTH, rider,
                    color_a=cloth * 0.6, color_b=cloth * 0.4, **common)
    builder.add(KIND_BOX, (0, -1.27, 0.05), (0.2, 0.28, 0.12), M_CLOTH, rider,
                color_a=cloth, color_b=cloth * 0.6, **common)
    builder.add(KIND_SPHERE, (0, -1.69, 0.12), (0.11, 0.12, 0.11), M_SKIN, rider,
                color_a=skin, color_b=skin * 0.7, **common)


def _place_apart(rng, low, high, count, min_gap, taken=None, tries=50):
    """Up to `count` positions in [low, high] at least `min_gap` from each other and `taken`."""
    chosen = list(taken or [])
    out = []
    for _ in range(count):
        for _ in range(tries):
            z = rng.uniform(low, high)
            if all(abs(z - other) >= min_gap for other in chosen):
                chosen.append(z)
                out.append(z)
                break
    return out


def build_scene(config: SceneConfig, seed: int) -> Scene:
    """Lays out one drive's street, objects and camera path, deterministically from `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
    num_frames = config.frames_per_drive
    world_from_camera = _camera_path(config, rng)
    cam_z0 = world_from_camera[0, 2, 3]
    cam_z1 = world_from_camera[-1, 2, 3]
    lane = config.lane_width
    road_half = lane + config.parking_width
    curb = config.curb_height
    sidewalk = rng.uniform(2.2, 4.0, size=2)
    street = StreetGeometry(lane, road_half, curb, sidewalk)
    z_lo = cam_z0 - 25.0
    z_end = cam_z1 + config.view_ahead * rng.uniform(0.9, 1.2)
    builder = _Builder()
    lab = LABEL_IDS

    # ---- Static scenery along each side.
    far_x = road_half + sidewalk.max() + 26.0
    for side_index, side in enumerate((-1.0, 1.0)):
        inner = road_half + sidewalk[side_index]  # |X| of the sidewalk's outer edge
        z = z_lo
        while z < z_end:
            if rng.random() < 0.68:  # a building, maybe with a hedge/wall/fence in front
                length = rng.uniform(8.0, 26.0)
                setback = rng.uniform(0.5, 8.0)
                depth = rng.uniform(8.0, 15.0)
                height = rng.uniform(5.0, 18.0)
                front = inner + setback
                color = _pick(rng, _FACADE_COLORS)
                builder.add(
                    KIND_BOX, (side * (front + depth / 2), -height / 2, z + length / 2),
                    (depth / 2, height / 2, length / 2), M_FACADE, lab["building"],
                    color_a=color, color_b=color * rng.uniform(0.55, 0.8),
                    # floor height, window spacing, window style, brick vs plaster
                    param=(rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.2), rng.random(),
                           float(rng.random() < 0.5)))
                if setback > 2.5 and rng.random() < 0.7:
                    choice = rng.integers(3)
                    x_mid = side * (inner + 0.4)
                    if choice == 0:
                        h = rng.uniform(0.8, 1.8)
                        builder.add(KIND_BOX, (x_mid, -h / 2, z + length / 2),
                                    (0.4, h / 2, length / 2 - 0.2), M_FOLIAGE, lab["vegetation"],
                                    color_a=(0.16, 0.34, 0.10), color_b=(0.05, 0.14, 0.04))
                    elif choice == 1:
                        h = rng.uniform(0.5, 1.1)
                        builder.add(KIND_BOX, (x_mid, -h / 2, z + length / 2),
                                    (0.15, h / 2, length / 2 - 0.2), M_WALL, lab["wall"],
                                    color_a=_pick(rng, _FACADE_COLORS) * 0.9,
                                    color_b=(0.4, 0.4, 0.4))
                    else:
                        h = rng.uniform(0.9, 1.5)
                        builder.add(KIND_BOX, (x_mid, -h / 2, z + length / 2),
                                    (0.03, h / 2, length / 2 - 0.2), M_FENCE, lab["fence"],
                                    color_a=(0.55, 0.45, 0.33), color_b=(0.25, 0.2, 0.15),
                                    param=(rng.uniform(0.12, 0.25), 0, 0, 0))
                z += length + (0.0 if rng.random() < 0.4 else rng.uniform(1.0, 6.0))
            else:  # green space with trees
                length = rng.uniform(10.0, 30.0)
                for tree_z in rng.uniform(z, z + length, size=rng.integers(1, 4)):
                    _add_tree(builder, rng, side * (inner + rng.uniform(2.0, 9.0)), tree_z,
                              curb)
                if rng.random() < 0.5:
                    h = rng.uniform(0.9, 1.4)
                    builder.add(KIND_BOX, (side * (inner + 0.3), -h / 2, z + length / 2),
                                (0.03, h / 2, length / 2), M_FENCE, lab["fence"],
                                color_a=(0.5, 0.52, 0.5), color_b=(0.2, 0.22, 0.2),
                                param=(rng.uniform(0.1, 0.2), 0, 0, 0))
                z += length
        # Forest belt closing the view sideways (keeps depth finite through gaps).
        z = z_lo
        while z < z_end + 10:
            length = rng.uniform(15.0, 40.0)
            height = rng.uniform(6.0, 13.0)
            builder.add(KIND_BOX, (side * (far_x + 5.0), -height / 2, z + length / 2),
                        (5.0, height / 2, length / 2), M_FOLIAGE, lab["vegetation"],
                        color_a=(0.18, 0.32, 0.12), color_b=(0.06, 0.12, 0.05))
            z += length
    # The street ends at a building across it.
    color = _pick(rng, _FACADE_COLORS)
    height = rng.uniform(8.0, 16.0)
    builder.add(KIND_BOX, (0.0, -height / 2, z_end + 6.0), (far_x, height / 2, 6.0), M_FACADE,
                lab["building"], color_a=color, color_b=color * 0.7,
                param=(rng.uniform(2.8, 3.6), rng.uniform(1.8, 3.2), rng.random(),
                       float(rng.random() < 0.5)))

    # ---- Street furniture on the sidewalks.
    visible_lo, visible_hi = cam_z0 - 5.0, min(z_end - 5.0, cam_z1 + 70.0)
    for tree_z in rng.uniform(visible_lo, visible_hi, size=config.num_trees):
        side_index = rng.integers(2)
        side = (-1.0, 1.0)[side_index]
        _add_tree(builder, rng, side * (road_half + sidewalk[side_index] - 0.7), tree_z, curb,
                  max_radius=min(2.2, sidewalk[side_index] - 0.3))
    for pole_z in rng.uniform(visible_lo, visible_hi, size=config.num_poles):
        side = rng.choice((-1.0, 1.0))
        _add_pole(builder, rng, side * (road_half + 0.45), pole_z, curb, side)

    # ---- Objects (each gets an ObjectTrack; its primitives live in its object frame).
    objects: List[ObjectTrack] = []
    counters = {label: 0 for label in INSTANCE_LABEL_IDS}

    def new_track(label, moving, poses):
        counters[label] += 1
        objects.append(ObjectTrack(label * 1000 + counters[label], label, moving, poses))
        return len(objects) - 1, objects[-1].instance_id

    cam_speed = (cam_z1 - cam_z0) / max(num_frames - 1, 1)
    for side in (-1.0, 1.0):
        count = config.num_parked_cars // 2 + (config.num_parked_cars % 2 if side > 0 else 0)
        for z in _place_apart(rng, cam_z0 - 8.0, visible_hi, count, 5.6):
            yaw = (0.0 if rng.random() < 0.7 else math.pi) + rng.uniform(-0.04, 0.04)
            owner, inst = new_track(lab["car"], False, _constant_track(
                num_frames, side * (lane + config.parking_width / 2), 0.0, z, yaw))
            _add_car(builder, rng, owner, inst)

    # Moving cars: the camera's lane (same direction, never slower than catch-up allows) and
    # the oncoming lane. Cars of one lane share a speed so they never overlap.
    same_speed = cam_speed * rng.uniform(0.9, 1.3)
    oncoming_speed = rng.uniform(0.8, 1.5)
    num_same = int(rng.binomial(config.num_moving_cars, 0.5))
    catch_up = max(0.0, (cam_speed - same_speed) * num_frames)
    z = cam_z0 + 9.0 + catch_up + rng.uniform(0.0, 25.0)
    for _ in range(num_same):
        owner, inst = new_track(lab["car"], True, _linear_track(
            num_frames, lane / 2, 0.0, z, 0.0, same_speed))
        _add_car(builder, rng, owner, inst)
        z += rng.uniform(8.0, 25.0)
    oncoming_end = cam_z0 + oncoming_speed * num_frames + cam_speed * num_frames
    for z in _place_apart(rng, cam_z0 + 12.0, max(oncoming_end, cam_z0 + 60.0),
                          config.num_moving_cars - num_same, 9.0):
        owner, inst = new_track(lab["car"], True, _linear_track(
            num_frames, -lane / 2, 0.0, z, math.pi, oncoming_speed))
        _add_car(builder, rng, owner, inst)

    for _ in range(config.num_pedestrians):
        side_index = rng.integers(2)
        side = (-1.0, 1.0)[side_index]
        x = side * (road_half + rng.uniform(0.5, sidewalk[side_index] - 0.5))
        z = rng.uniform(cam_z0 + 4.0, visible_hi)
        height = rng.uniform(1.55, 1.9)
        if rng.random() < config.moving_pedestrian_fraction:
            yaw = rng.choice((0.0, math.pi))
            poses = _linear_track(num_frames, x, -curb, z, yaw, rng.uniform(0.1, 0.16))
            owner, inst = new_track(lab["person"], True, poses)
        else:
            poses = _constant_track(num_frames, x, -curb, z, rng.uniform(-math.pi, math.pi))
            owner, inst = new_track(lab["person"], False, poses)
        _add_person(builder, rng, owner, inst, lab["person"], height)

    for _ in range(config.num_cyclists):
        side = rng.choice((-1.0, 1.0))
        speed = rng.uniform(0.35, 0.6)
        z = cam_z0 + (rng.uniform(10.0, 45.0) if side > 0 else rng.uniform(15.0, 90.0))
        yaw = 0.0 if side > 0 else math.pi
        poses = _linear_track(num_frames, side * (lane - 0.35), 0.0, z, yaw, speed)
        rider_owner, rider_inst = new_track(lab["rider"], True, poses)
        bike_owner, bike_inst = new_track(lab["bicycle"], True, poses.copy())
        _add_cyclist(builder, rng, rider_owner, bike_owner, rider_inst, bike_inst)

    return Scene(config=config, seed=int(seed),
                 intrinsics=camera_intrinsics(config.height, config.width),
                 world_from_camera=world_from_camera, street=street, prims=builder.table(),
                 objects=objects, noise_table=noise.make_noise_table(rng))


def _add_tree(builder, rng, x, z, ground, max_radius: Optional[float] = None):
    trunk_h = rng.uniform(2.2, 3.5)
    radius = rng.uniform(1.4, 2.8)
    if max_radius is not None:
        radius = min(radius, max_radius)
    trunk_r = rng.uniform(0.12, 0.22)
    veg = LABEL_IDS["vegetation"]
    builder.add(KIND_CYLINDER, (x, -(ground + trunk_h / 2), z), (trunk_r, trunk_h / 2, trunk_r),
                M_BARK, veg, color_a=(0.30, 0.22, 0.15), color_b=(0.15, 0.11, 0.08))
    crown_h = radius * rng.uniform(1.0, 1.4)
    builder.add(KIND_SPHERE, (x, -(ground + trunk_h + crown_h * 0.8), z),
                (radius, crown_h, radius), M_FOLIAGE, veg, yaw=rng.uniform(0, math.pi),
                color_a=_pick(rng, np.array([(0.20, 0.38, 0.10), (0.28, 0.40, 0.12),
                                             (0.16, 0.30, 0.12)]), 0.03),
                color_b=(0.05, 0.12, 0.04))


def _add_pole(builder, rng, x, z, ground, side):
    height = rng.uniform(3.0, 6.5)
    radius = rng.uniform(0.05, 0.09)
    builder.add(KIND_CYLINDER, (x, -(ground + height / 2), z), (radius, height / 2, radius),
                M_METAL, LABEL_IDS["pole"], color_a=(0.45, 0.46, 0.48), color_b=(0.3, 0.3, 0.3))
    kind = rng.random()
    # Signs face the traffic of their side: right side faces -Z (towards the camera).
    facing = -1.0 if side > 0 else 1.0
    if kind < 0.5:
        size = rng.uniform(0.3, 0.45)
        colors = [(0.75, 0.10, 0.10), (0.10, 0.25, 0.65), (0.85, 0.75, 0.10)]
        builder.add(KIND_BOX, (x, -(ground + height - size), z + facing * (radius + 0.03)),
                    (size, size, 0.025), M_SIGN, LABEL_IDS["traffic sign"],
                    color_a=colors[rng.integers(3)], color_b=(0.92, 0.92, 0.92),
                    param=(facing, rng.integers(2), 0, 0))
    elif kind < 0.7:
        builder.add(KIND_BOX, (x, -(ground + height - 0.45), z + facing * (radius + 0.15)),
                    (0.16, 0.45, 0.14), M_TRAFFIC_LIGHT, LABEL_IDS["traffic light"],
                    color_a=(0.12, 0.12, 0.12), color_b=(0.0, 0.0, 0.0),
                    param=(facing, rng.integers(3), 0, 0))
