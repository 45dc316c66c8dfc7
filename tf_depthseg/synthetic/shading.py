"""Materials: procedural albedo per surface (world/object-anchored) and Lambertian shading.

A shader receives a `Surface` of n pixels of one material and returns albedo `[n, 3]`. Texture
coordinates (u, v) are metres on the surface in the primitive's own (rigid) frame, so a texture
moves with its object and never swims. Lighting is one fixed sun plus ambient (no specular, no
per-frame noise), so a static surface has the same colour in every frame.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_depthseg.synthetic import noise
from tf_depthseg.synthetic import scene as scene_lib

# Direction towards the sun in the world (Y down): high, from the front left.
SUN = np.array([-0.35, -0.8, -0.45]) / np.linalg.norm([-0.35, -0.8, -0.45])
AMBIENT = 0.5
DIFFUSE = 0.55


@dataclasses.dataclass
class Surface:
    """Per-pixel surface data of n pixels (all `[n]` unless noted).

    u, v: texture coordinates in metres; fu, fv: pixel footprints along u and v (metres);
    q: `[3, n]` hit point in the primitive's metric frame (centre at 0, half extents `scale`);
    normal: `[3, n]` outward unit normal in that frame; face: 0/1/2 = flat face whose normal is
    that axis, 3 = curved; scale: `[3, n]` half extents; color_a, color_b: `[n, 3]`;
    param: `[n, 4]`; table: the scene's value-noise lattice.
    """

    u: np.ndarray
    v: np.ndarray
    fu: np.ndarray
    fv: np.ndarray
    q: np.ndarray
    normal: np.ndarray
    face: np.ndarray
    scale: np.ndarray
    color_a: np.ndarray
    color_b: np.ndarray
    param: np.ndarray
    table: np.ndarray

    @property
    def footprint(self):
        return np.maximum(self.fu, self.fv)


def _mix(a, b, w):
    """a + (b - a) * w with colour `[n, 3]` or `[3]` endpoints and weight `[n]` (float32)."""
    a = np.asarray(a, np.float32)
    return a + (np.asarray(b, np.float32) - a) * w.astype(np.float32, copy=False)[:, None]


def _gray(value):
    return np.repeat(value[:, None], 3, axis=1)


def _patches(s: Surface, size_u: float, size_v: float, threshold: float,
             seed_offset: float) -> np.ndarray:
    """Coverage `[n]` in [0, 1] of irregular blobs (value noise above `threshold`, cells of
    size_u x size_v metres) with crisp, footprint-filtered edges."""
    value = noise.value_noise(s.table, s.u / size_u + seed_offset, s.v / size_v - seed_offset)
    # Value noise climbs ~1 per cell, so (value - threshold) * cell size is roughly the
    # signed distance to the blob's edge in metres.
    return noise.step_coverage((value - threshold) * min(size_u, size_v), s.footprint)


def road(s: Surface, lane_width: float) -> np.ndarray:
    """Asphalt: grain at every scale, tar repairs and worn patches, lane markings.

    The repairs and worn patches (metres across, sharp edges, +-0.12 albedo) keep the road
    textured at the drives' 64x208 pixels, where a pixel covers ~0.5 m of road 10 m ahead and
    the grain finer than that is filtered out: without them the road was nearly uniform grey,
    so self-supervised depth (photometric loss, auto-masking) had nothing to match there and
    left most of the ground truth's pixels unsupervised (docs/sde.md).
    """
    grain = noise.fbm(s.table, s.u, s.v, s.footprint,
                      ((0.03, 0.14), (0.09, 0.12), (0.3, 0.08), (1.3, 0.08), (5.0, 0.10)), 1.0)
    repairs = _patches(s, 1.0, 2.0, 0.62, 11.0)  # fresh tar: darker
    worn = _patches(s, 1.4, 2.8, 0.64, 23.0)  # worn, dusty asphalt: lighter
    albedo = _gray(0.30 + grain - 0.12 * repairs + 0.12 * worn)
    # Dashed centre line (3 m on, 3 m off) and solid lines between lanes and parking strips.
    centre = (noise.line_coverage(s.u, 0.12, s.fu)
              * noise.periodic_coverage(s.v, 6.0, 3.0, s.fv))
    edge = noise.line_coverage(np.abs(s.u) - lane_width, 0.15, s.fu)
    marking = np.clip(centre + edge, 0.0, 1.0)
    return _mix(albedo, np.array([0.85, 0.85, 0.82]), marking)


def sidewalk(s: Surface) -> np.ndarray:
    tile = 0.6
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.04, 0.10), (0.15, 0.06), (2.0, 0.05)),
                      2.0)
    tile_value = noise.lattice(s.table, np.floor(s.u / tile).astype(np.int32) + 71,
                               np.floor(s.v / tile).astype(np.int32))
    tile_shift = (tile_value - 0.5) * 0.12 * noise.detail_weight(tile, s.footprint)
    joints = np.maximum(noise.periodic_coverage(s.u, tile, 0.03, s.fu),
                        noise.periodic_coverage(s.v, tile, 0.03, s.fv))
    albedo = _gray(0.58 + grain + tile_shift) * np.array([1.0, 0.97, 0.93])
    return _mix(albedo, np.array([0.32, 0.31, 0.30]), joints)


def curb(s: Surface) -> np.ndarray:
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.05, 0.12), (0.3, 0.06)), 3.0)
    return _gray(0.68 + grain)


def terrain(s: Surface) -> np.ndarray:
    patches = 0.5 + noise.fbm(s.table, s.u, s.v, s.footprint, ((3.0, 0.8), (0.8, 0.5)), 4.0)
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.04, 0.25), (0.12, 0.2)), 5.0)
    base = _mix(np.array([0.30, 0.45, 0.15]), np.array([0.50, 0.45, 0.25]),
                np.clip(patches, 0, 1))
    return base * (1.0 + grain)[:, None]


def facade(s: Surface) -> np.ndarray:
    floor_h, spacing, style, brick = s.param[:, 0], s.param[:, 1], s.param[:, 2], s.param[:, 3]
    roof = (s.face == 1) & (s.normal[1] < 0)
    height = s.scale[1] - s.q[1]  # metres above the building's base (y points down)
    fine = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.05, 0.10), (0.2, 0.08), (1.5, 0.06)),
                     6.0)
    wall_tone = 1.0 + fine
    # Brick buildings: 0.25 m courses, joints offset by half a brick on every other course.
    bricks = np.flatnonzero(brick > 0.5)
    if bricks.size:
        h, u = height[bricks], s.u[bricks]
        course = np.floor(h * 4.0)
        shifted = u + 0.25 * (course % 2)
        mortar = np.maximum(noise.periodic_coverage(h, 0.25, 0.03, s.fv[bricks]),
                            noise.periodic_coverage(shifted, 0.5, 0.03, s.fu[bricks]))
        tone = (noise.lattice(s.table, np.floor(shifted * 2.0).astype(np.int32),
                              course.astype(np.int32) + 913) - 0.5) * 0.25
        tone *= noise.detail_weight(0.25, s.footprint[bricks])
        wall_tone[bricks] += tone - 0.25 * mortar
    albedo = s.color_a * wall_tone[:, None]
    # Cornice line under every floor.
    cornice = noise.periodic_coverage(height, floor_h, 0.12, s.fv)
    albedo = _mix(albedo, s.color_b, cornice)
    # Windows on a grid; frames are a lighter border around darker glass.
    win_w = spacing * (0.35 + 0.2 * style)
    win_h = floor_h * 0.5
    du = noise.periodic_distance(s.u - spacing * 0.5, spacing)
    dv = noise.periodic_distance(height - floor_h * 0.55, floor_h)
    across = noise.coverage_at(du, spacing, win_w, s.fu)
    up = noise.coverage_at(dv, floor_h, win_h, s.fv)
    glass_across = noise.coverage_at(du, spacing, win_w - 0.16, s.fu)
    glass_up = noise.coverage_at(dv, floor_h, win_h - 0.16, s.fv)
    above_ground = noise.step_coverage(height - 1.0, s.fv)
    frame_cov = across * up * above_ground
    glass_cov = glass_across * glass_up * above_ground
    window_id = noise.lattice(s.table, np.floor(s.u / spacing + 0.5).astype(np.int32),
                              np.floor(height / floor_h).astype(np.int32) + 577)
    glass = _mix(np.array([0.10, 0.13, 0.18]), np.array([0.35, 0.42, 0.50]),
                 window_id * noise.detail_weight(spacing, s.footprint)
                 + 0.5 * (1 - noise.detail_weight(spacing, s.footprint)))
    albedo = _mix(albedo, np.array([0.85, 0.85, 0.82]), frame_cov)
    albedo = albedo + (glass - albedo) * glass_cov[:, None]
    roof_albedo = _gray(0.35 + fine)
    return np.where(roof[:, None], roof_albedo, albedo)


def foliage(s: Surface) -> np.ndarray:
    leaves = 0.5 + noise.fbm(s.table, s.u, s.v, s.footprint,
                             ((0.05, 0.55), (0.14, 0.5), (0.4, 0.45), (1.5, 0.35)), 7.0)
    return _mix(s.color_b, s.color_a * 1.3, np.clip(leaves, 0.0, 1.0))


def bark(s: Surface) -> np.ndarray:
    stripes = noise.fbm(s.table, s.u * 4.0, s.v * 0.5, s.footprint * 4.0,
                        ((0.1, 0.6), (0.3, 0.4)), 8.0)
    return _mix(s.color_a, s.color_b, np.clip(0.5 + stripes, 0, 1))


def metal(s: Surface) -> np.ndarray:
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.05, 0.08), (0.4, 0.08)), 9.0)
    return s.color_a * (1.0 + grain)[:, None]


def sign(s: Surface) -> np.ndarray:
    facing = s.param[:, 0]
    front = (s.face == 2) & (np.sign(s.normal[2]) == np.sign(facing))
    x = s.q[0] / s.scale[0]
    y = s.q[1] / s.scale[1]
    radius = np.sqrt(x * x + y * y)
    round_plate = s.param[:, 1] > 0.5
    edge = np.where(round_plate, radius, np.maximum(np.abs(x), np.abs(y)))
    border = np.clip((edge - 0.72) / np.maximum(s.footprint / s.scale[0], 1e-3) + 0.5, 0, 1)
    bar = noise.line_coverage(y * s.scale[1], 0.18 * s.scale[1], s.fv) * (np.abs(x) < 0.55)
    face = _mix(s.color_a, s.color_b, np.clip(border + bar, 0, 1))
    outside = np.where(round_plate, radius > 1.0, False)
    back = np.full_like(face, 0.45)
    return np.where((front & ~outside)[:, None], face, back)


def traffic_light(s: Surface) -> np.ndarray:
    facing = s.param[:, 0]
    lit = s.param[:, 1]
    front = (s.face == 2) & (np.sign(s.normal[2]) == np.sign(facing))
    lamp_index = np.clip(np.floor((s.q[1] / s.scale[1] + 1.0) * 1.5), 0, 2)
    centre_y = (lamp_index - 1.0) * (2.0 / 3.0) * s.scale[1]
    dist = np.hypot(s.q[0], s.q[1] - centre_y)
    lamp = noise.line_coverage(dist, 0.22, s.footprint)
    colours = np.array([(1.0, 0.15, 0.1), (1.0, 0.7, 0.1), (0.1, 0.9, 0.3)])
    lamp_colour = colours[lamp_index.astype(int)]
    lamp_colour = np.where((lamp_index == lit)[:, None], lamp_colour, lamp_colour * 0.25)
    housing = s.color_a + 0.0 * s.u[:, None]
    return np.where(front[:, None], _mix(housing, lamp_colour, lamp), housing)


def paint(s: Surface) -> np.ndarray:
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.1, 0.05), (0.6, 0.05)), 10.0)
    albedo = s.color_a * (1.0 + grain)[:, None]
    # Bumper band along the bottom and a door seam on the sides.
    height_frac = (s.q[1] / s.scale[1] + 1.0) * 0.5  # 0 top .. 1 bottom
    bumper = noise.step_coverage(s.q[1] - 0.5 * s.scale[1], s.fv)
    seam = noise.line_coverage(s.q[2], 0.03, s.fu) * (s.face == 0)
    albedo = _mix(albedo, s.color_b, np.clip(bumper + seam, 0, 1))
    # Head and tail lights on the front (+z) and back faces.
    on_end = (s.face == 2)
    lamp = (noise.line_coverage(np.abs(s.q[0]) - 0.65 * s.scale[0], 0.3, s.fu)
            * noise.line_coverage(height_frac - 0.3, 0.25, s.fv / (2 * s.scale[1])))
    lamp_colour = np.where((s.normal[2] > 0)[:, None], np.array([0.95, 0.92, 0.8]),
                           np.array([0.8, 0.08, 0.06]))
    return np.where(on_end[:, None], _mix(albedo, lamp_colour, lamp), albedo) if len(s.u) else albedo


def glass(s: Surface) -> np.ndarray:
    roof = (s.face == 1)
    # Pillars: the ends of the cabin (and the centre B-pillar) are painted. On the sides u is
    # the metric z coordinate, on the front and back the x coordinate.
    half = np.where(s.face == 0, s.scale[2], s.scale[0])
    pillar = noise.step_coverage(np.abs(s.u) - 0.82 * half, s.fu)
    pillar = np.maximum(pillar, noise.line_coverage(s.q[2], 0.12, s.fu) * (s.face == 0))
    reflection = 0.5 + noise.fbm(s.table, s.u, s.v, s.footprint, ((0.5, 0.5),), 11.0)
    window = s.color_b * (0.8 + 0.5 * reflection)[:, None]
    albedo = _mix(window, s.color_a, pillar)
    return np.where(roof[:, None], s.color_a, albedo)


def tire(s: Surface) -> np.ndarray:
    cap = s.face == 1
    radial = np.hypot(s.q[0], s.q[2]) / s.scale[0]
    rim = noise.line_coverage(radial, 1.2, s.footprint / s.scale[0])
    treads = noise.periodic_coverage(s.u, 0.08, 0.03, s.fu)
    side = _mix(s.color_a, s.color_a * 2.5, treads)
    return np.where(cap[:, None], _mix(s.color_a, s.color_b, rim), side)


def cloth(s: Surface) -> np.ndarray:
    folds = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.04, 0.15), (0.15, 0.2)), 12.0)
    return s.color_a * (1.0 + folds)[:, None]


def skin(s: Surface) -> np.ndarray:
    hair = noise.step_coverage(-s.q[1] - 0.1 * s.scale[1], s.fv)
    face = s.color_a * (1.0 + noise.fbm(s.table, s.u, s.v, s.footprint, ((0.04, 0.1),), 13.0)
                        )[:, None]
    return _mix(face, np.array([0.12, 0.08, 0.05]), hair)


def fence(s: Surface) -> np.ndarray:
    slat = s.param[:, 0]
    gap = noise.periodic_coverage(s.u / slat, 1.0, 0.3, s.fu / slat)
    rail = noise.line_coverage(np.abs(s.q[1]) - 0.6 * s.scale[1], 0.06, s.fv)
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.05, 0.15),), 14.0)
    albedo = s.color_a * (1.0 + grain)[:, None]
    return _mix(_mix(albedo, s.color_b, gap), s.color_a * 0.8, rail)


def wall(s: Surface) -> np.ndarray:
    grain = noise.fbm(s.table, s.u, s.v, s.footprint, ((0.04, 0.12), (0.2, 0.08), (1.0, 0.08)),
                      15.0)
    blocks = np.maximum(noise.periodic_coverage(s.u, 1.0, 0.02, s.fu),
                        noise.periodic_coverage(s.v, 0.4, 0.02, s.fv))
    return _mix(s.color_a * (1.0 + grain)[:, None], s.color_b, blocks)


def sky(directions: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Sky colour `[n, 3]` from unit world directions `[3, n]` (depends on direction only)."""
    elevation = np.clip(-directions[1], 0.0, 1.0)
    gradient = np.clip(elevation * 3.0, 0.0, 1.0) ** 0.7
    colour = _mix(np.array([0.80, 0.85, 0.90]), np.array([0.38, 0.56, 0.85]), gradient)
    # Clouds on a plane far above: coordinates are a function of the direction alone.
    scale = 1.0 / (elevation + 0.08)
    cu, cv = directions[0] * scale, directions[2] * scale
    cloud = noise.value_noise(table, cu * 1.5 + 300.0, cv * 3.0) * 0.7 + noise.value_noise(
        table, cu * 5.0 + 500.0, cv * 8.0) * 0.3
    cover = np.clip((cloud - 0.5) * 2.5, 0.0, 1.0) * np.clip(elevation * 8.0, 0.0, 1.0)
    return _mix(colour, np.array([0.95, 0.95, 0.96]), cover)


SHADERS = {
    scene_lib.M_SIDEWALK: sidewalk, scene_lib.M_CURB: curb, scene_lib.M_TERRAIN: terrain,
    scene_lib.M_FACADE: facade, scene_lib.M_FOLIAGE: foliage, scene_lib.M_BARK: bark,
    scene_lib.M_METAL: metal, scene_lib.M_SIGN: sign, scene_lib.M_TRAFFIC_LIGHT: traffic_light,
    scene_lib.M_PAINT: paint, scene_lib.M_GLASS: glass, scene_lib.M_TIRE: tire,
    scene_lib.M_CLOTH: cloth, scene_lib.M_SKIN: skin, scene_lib.M_FENCE: fence,
    scene_lib.M_WALL: wall,
}  # M_ROAD needs the street geometry and is called directly.


def lambert(cos_sun: np.ndarray) -> np.ndarray:
    """Shading factor `[n]` from the cosine between the surface normal and the sun."""
    return AMBIENT + DIFFUSE * np.maximum(cos_sun, 0.0)
