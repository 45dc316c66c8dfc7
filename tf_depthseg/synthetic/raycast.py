"""Vectorised ray casting of the street: analytic ground, then primitives through screen boxes.

Each pixel's camera-frame ray is `(x_n, y_n, 1)` with `x_n = (x - cx) / fx`, so the ray
parameter t of a hit IS the z-depth (no conversion, no ray-length confusion). Affine maps keep
t unchanged, so each primitive is intersected as a unit shape in its own frame.

To avoid a Python loop over primitives, every primitive's exact screen bounding box (the
projected hull of its near-plane-clipped bounding cube) is turned into (pixel, primitive)
candidate pairs, all pairs of one shape kind are intersected at once, and a z-buffer
(`np.minimum.at`) keeps the nearest hit per pixel.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tf_depthseg.synthetic import scene as scene_lib

NEAR = 0.05  # metres; nothing of the scene comes this close to the camera
NUM_GROUND = 4  # ground pseudo-primitives at rows 0..3 of the render table
G_ROAD, G_SIDEWALK, G_CURB, G_TERRAIN = range(NUM_GROUND)

_UNIT_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
                         np.float64)
_CUBE_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8)
                        if np.sum(_UNIT_CORNERS[a] != _UNIT_CORNERS[b]) == 1])


@dataclasses.dataclass
class Hits:
    """Nearest surface per pixel (flat arrays over H*W pixels).

    depth: float32, inf where the ray escapes (sky); row: int32 render-table row of the
    surface, -1 = sky (rows < NUM_GROUND are the ground parts).
    """

    depth: np.ndarray
    row: np.ndarray


def pixel_rays(intrinsics: np.ndarray, height: int, width: int):
    """Normalised image coordinates: x_n `[W]`, y_n `[H]` (the ray is (x_n, y_n, 1))."""
    fx, fy, cx, cy = intrinsics[0, 0], intrinsics[1, 1], intrinsics[0, 2], intrinsics[1, 2]
    return ((np.arange(width) - cx) / fx, (np.arange(height) - cy) / fy)


def world_directions(rotation: np.ndarray, xn: np.ndarray, yn: np.ndarray) -> np.ndarray:
    """World-frame ray directions `[3, H*W]` (float32) for camera rotation `[3, 3]`."""
    xs = xn[None, :]
    ys = yn[:, None]
    rows = [(rotation[i, 0] * xs + rotation[i, 1] * ys + rotation[i, 2]).ravel()
            for i in range(3)]
    return np.stack(rows).astype(np.float32)


def cast_ground(street: scene_lib.StreetGeometry, center: np.ndarray,
                directions: np.ndarray):
    """Road (Y = 0, |X| < road_half), raised sidewalk/terrain (Y = -curb), curb faces.

    Args:
      street: cross-section.
      center: camera position in the world `[3]` (above the ground, Y < -curb).
      directions: `[3, P]` world ray directions with camera z = 1.
    Returns:
      (t `[P]` float32 depth with inf for misses, row `[P]` int32 ground part or -1).
    """
    cx, cy = float(center[0]), float(center[1])
    dx, dy = directions[0], directions[1]
    half = street.road_half_width
    down = dy > 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_dy = np.where(down, 1.0 / np.where(down, dy, 1.0), np.inf)
        t_top = (-street.curb_height - cy) * inv_dy
        x_top = cx + t_top * dx
        t_road = -cy * inv_dy
        x_road = cx + t_road * dx
        on_top = down & (np.abs(x_top) > half)
        on_road = down & ~on_top & (np.abs(x_road) <= half)
        on_curb = down & ~on_top & ~on_road
        t_curb = (np.sign(x_road) * half - cx) / np.where(np.abs(dx) > 1e-12, dx, 1e-12)
    t = np.full(dx.shape, np.inf, np.float32)
    t[on_top] = t_top[on_top]
    t[on_road] = t_road[on_road]
    t[on_curb] = t_curb[on_curb]
    row = np.full(dx.shape, -1, np.int32)
    # Sidewalk width differs per side: left (X < 0) uses sidewalk_width[0].
    width_at = np.where(x_top < 0, street.sidewalk_width[0], street.sidewalk_width[1])
    row[on_top] = np.where(np.abs(x_top[on_top]) <= half + width_at[on_top], G_SIDEWALK,
                           G_TERRAIN)
    row[on_road] = G_ROAD
    row[on_curb] = G_CURB
    return t, row


def screen_boxes(cam_from_prim_linear: np.ndarray, prim_origin_cam: np.ndarray,
                 intrinsics: np.ndarray, height: int, width: int):
    """Pixel bounding boxes of unit cubes seen by the camera.

    Args:
      cam_from_prim_linear: `[N, 3, 3]` maps unit-shape coords to camera coords (with
        `prim_origin_cam`: camera coords of the unit shape's centre, `[N, 3]`).
    Returns:
      (visible `[N]` bool, x0, x1, y0, y1 `[N]` int inclusive pixel ranges).
    """
    corners = (np.einsum("nij,kj->nki", cam_from_prim_linear, _UNIT_CORNERS)
               + prim_origin_cam[:, None, :])  # [N, 8, 3]
    z = corners[..., 2]
    a = corners[:, _CUBE_EDGES[:, 0]]
    b = corners[:, _CUBE_EDGES[:, 1]]
    za, zb = a[..., 2], b[..., 2]
    crosses = (za - NEAR) * (zb - NEAR) < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(crosses, (NEAR - za) / (zb - za), 0.0)
    clipped = a + frac[..., None] * (b - a)  # [N, 12, 3] points on the near plane
    points = np.concatenate([corners, clipped], axis=1)
    valid = np.concatenate([z >= NEAR, crosses], axis=1)
    pz = np.where(valid, points[..., 2], 1.0)
    u = intrinsics[0, 0] * points[..., 0] / pz + intrinsics[0, 2]
    v = intrinsics[1, 1] * points[..., 1] / pz + intrinsics[1, 2]
    umin = np.where(valid, u, np.inf).min(1)
    umax = np.where(valid, u, -np.inf).max(1)
    vmin = np.where(valid, v, np.inf).min(1)
    vmax = np.where(valid, v, -np.inf).max(1)
    visible = valid.any(1) & (umax >= 0) & (umin <= width - 1) & (vmax >= 0) & (
        vmin <= height - 1)
    with np.errstate(invalid="ignore"):
        x0 = np.clip(np.floor(np.where(visible, umin, 0)), 0, width - 1).astype(np.int64)
        x1 = np.clip(np.ceil(np.where(visible, umax, 0)), 0, width - 1).astype(np.int64)
        y0 = np.clip(np.floor(np.where(visible, vmin, 0)), 0, height - 1).astype(np.int64)
        y1 = np.clip(np.ceil(np.where(visible, vmax, 0)), 0, height - 1).astype(np.int64)
    return visible, x0, x1, y0, y1


def _pairs(x0, x1, y0, y1, width):
    """All (primitive, pixel) pairs inside each primitive's box, built row segment by row
    segment without integer division.

    Returns:
      (counts `[N]` pairs per primitive, pixel `[P]` flat pixel index of each pair); the pairs
      of primitive i are the contiguous block i (so per-primitive constants can be expanded
      with `np.repeat(values, counts)`).
    """
    box_w = x1 - x0 + 1
    box_h = y1 - y0 + 1
    seg_prim = np.repeat(np.arange(len(x0)), box_h)
    seg_row = y0[seg_prim] + (np.arange(len(seg_prim)) - np.repeat(np.cumsum(box_h) - box_h,
                                                                  box_h))
    seg_len = box_w[seg_prim]
    seg_start = np.cumsum(seg_len) - seg_len
    pixel = np.arange(int(seg_len.sum())) + np.repeat(seg_row * width + x0[seg_prim] - seg_start,
                                                     seg_len)
    return box_w * box_h, pixel


def _intersect_box(o, d):
    """Entry t of rays o + t d `[3, P]` into [-1, 1]^3 (inf = miss or camera inside)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_near = np.full(o.shape[1], -np.inf, np.float32)
        t_far = np.full(o.shape[1], np.inf, np.float32)
        for axis in range(3):
            inv = 1.0 / d[axis]
            ta = (-1.0 - o[axis]) * inv
            tb = (1.0 - o[axis]) * inv
            np.maximum(t_near, np.minimum(ta, tb), out=t_near)
            np.minimum(t_far, np.maximum(ta, tb), out=t_far)
    hit = (t_near <= t_far) & (t_near > NEAR)
    return np.where(hit, t_near, np.inf)


def _intersect_sphere(o, d):
    """Entry t of rays into the unit ball (inf = miss)."""
    a = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - 1.0
    disc = b * b - a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc > 0) & (t > NEAR), t, np.inf)


def _intersect_cylinder(o, d):
    """Entry t of rays into the unit cylinder x^2 + z^2 <= 1, |y| <= 1 (side or caps)."""
    a = d[0] * d[0] + d[2] * d[2]
    b = o[0] * d[0] + o[2] * d[2]
    c = o[0] * o[0] + o[2] * o[2] - 1.0
    disc = b * b - a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / a
        y_side = o[1] + t_side * d[1]
        side_ok = (disc > 0) & (np.abs(y_side) <= 1.0) & (t_side > NEAR)
        cap_y = np.where(o[1] < 0, np.float32(-1.0), np.float32(1.0))
        t_cap = (cap_y - o[1]) / d[1]
        xc = o[0] + t_cap * d[0]
        zc = o[2] + t_cap * d[2]
        cap_ok = (np.abs(o[1]) > 1.0) & (xc * xc + zc * zc <= 1.0) & (t_cap > NEAR)
    return np.minimum(np.where(side_ok, t_side, np.inf), np.where(cap_ok, t_cap, np.inf))


_INTERSECT = {scene_lib.KIND_BOX: _intersect_box, scene_lib.KIND_SPHERE: _intersect_sphere,
              scene_lib.KIND_CYLINDER: _intersect_cylinder}


def cast_primitives(kind, ray_origin, ray_matrix, intrinsics, xn, yn, zbuffer, rowbuffer,
                    row_offset):
    """Intersects all primitives and updates the z-buffer in place.

    Args:
      kind: `[N]` primitive kinds.
      ray_origin: `[N, 3]` camera centre in each primitive's unit frame.
      ray_matrix: `[N, 3, 3]` maps a camera ray (x_n, y_n, 1) into each unit frame.
      intrinsics: `[3, 3]`.
      xn, yn: normalised pixel coordinates `[W]`, `[H]`.
      zbuffer: float32 `[H*W]` nearest depth so far (ground), updated.
      rowbuffer: int32 `[H*W]` render-table row of the nearest surface, updated.
      row_offset: render-table row of primitive 0.
    """
    height, width = len(yn), len(xn)
    if len(kind) == 0:
        return
    cam_from_prim = np.linalg.inv(ray_matrix)
    origin_cam = -np.einsum("nij,nj->ni", cam_from_prim, ray_origin)
    visible, x0, x1, y0, y1 = screen_boxes(cam_from_prim, origin_cam, intrinsics, height, width)
    xn_flat = np.tile(xn.astype(np.float32), height)
    yn_flat = np.repeat(yn.astype(np.float32), width)
    t_parts, pix_parts, row_parts = [], [], []
    for shape, intersect in _INTERSECT.items():
        rows = np.flatnonzero(visible & (kind == shape))
        if rows.size == 0:
            continue
        counts, pixel = _pairs(x0[rows], x1[rows], y0[rows], y1[rows], width)
        m = ray_matrix[rows].astype(np.float32)
        org = ray_origin[rows].astype(np.float32)
        rx = xn_flat[pixel]
        ry = yn_flat[pixel]
        d = np.stack([np.repeat(m[:, i, 0], counts) * rx + np.repeat(m[:, i, 1], counts) * ry
                      + np.repeat(m[:, i, 2], counts) for i in range(3)])
        o = np.stack([np.repeat(org[:, i], counts) for i in range(3)])
        t = intersect(o, d)
        hit = np.flatnonzero(t < np.inf)
        t_parts.append(t[hit].astype(np.float32, copy=False))
        pix_parts.append(pixel[hit])
        row_parts.append(np.repeat(rows.astype(np.int32) + row_offset, counts)[hit])
    if not t_parts:
        return
    t = np.concatenate(t_parts)
    pix = np.concatenate(pix_parts)
    rows = np.concatenate(row_parts)
    np.minimum.at(zbuffer, pix, t)
    win = t <= zbuffer[pix]
    rowbuffer[pix[win]] = rows[win]
