"""Renders a laid-out `Scene` from a camera pose: RGB, z-depth, labels, instance ids."""

from __future__ import annotations

from typing import Dict

import numpy as np

from tf_depthseg.data import datasets
from tf_depthseg.synthetic import raycast
from tf_depthseg.synthetic import scene as scene_lib
from tf_depthseg.synthetic import shading

_MIN_COS = 0.05  # clamps the footprint stretch of surfaces seen exactly edge-on
_SKY_LABEL = scene_lib.LABEL_IDS["sky"]


class Renderer:
    """Renders one scene from arbitrary camera poses (static tables prepared once).

    The render table has the ground parts (road, sidewalk, curb, terrain) at rows 0..3 (unit
    scale, identity frame = the world) and the scene's primitives after them, sorted by
    material. Shading sorts the hit pixels by row, so every per-row constant is expanded with
    `np.repeat` over contiguous runs and every material is one contiguous slice.
    """

    def __init__(self, scene: scene_lib.Scene):
        self.scene = scene
        cfg = scene.config
        self.height, self.width = cfg.height, cfg.width
        self.intrinsics = scene.intrinsics
        self.xn, self.yn = raycast.pixel_rays(scene.intrinsics, self.height, self.width)
        self.ray_norm = np.sqrt(np.tile(self.xn, self.height) ** 2
                                + np.repeat(self.yn, self.width) ** 2 + 1.0).astype(np.float32)
        self.focal = float(0.5 * (scene.intrinsics[0, 0] + scene.intrinsics[1, 1]))
        prims = scene.prims
        order = np.argsort(prims.material, kind="stable")
        lab = scene_lib.LABEL_IDS
        g = raycast.NUM_GROUND
        ground_material = np.array([scene_lib.M_ROAD, scene_lib.M_SIDEWALK, scene_lib.M_CURB,
                                    scene_lib.M_TERRAIN], np.int16)
        ground_label = [lab["road"], lab["sidewalk"], lab["sidewalk"], lab["terrain"]]
        self.material = np.concatenate([ground_material, prims.material[order]])
        self.label = np.concatenate([np.array(ground_label, np.uint8), prims.label[order]])
        self.instance = np.concatenate([np.zeros(g, np.int32), prims.instance[order]])
        self.color_a = np.concatenate([np.zeros((g, 3), np.float32), prims.color_a[order]])
        self.color_b = np.concatenate([np.zeros((g, 3), np.float32), prims.color_b[order]])
        self.param = np.concatenate([np.zeros((g, 4), np.float32), prims.param[order]])
        self.scale = np.concatenate([np.ones((g, 3)), prims.scale[order]])
        self.kind = np.concatenate([np.full(g, scene_lib.KIND_GROUND, np.int8),
                                    prims.kind[order]])
        self.affine = np.concatenate([np.tile(np.eye(3, 4), (g, 1, 1)),
                                      prims.prim_from_parent[order]])
        self.owner = np.concatenate([np.full(g, -1, np.int32), prims.owner[order]])
        self.moving_rows = np.flatnonzero(self.owner >= 0)
        self.num_rows = len(self.kind)
        if self.num_rows >= np.iinfo(np.int16).max:
            raise ValueError(f"{self.num_rows} primitives; the renderer supports < 32767")
        self.scale_t = np.ascontiguousarray(self.scale.T, np.float32)  # [3, rows]
        # Rows of material m are material_rows[m]:material_rows[m + 1] (material is sorted).
        self.material_rows = np.searchsorted(self.material,
                                             np.arange(scene_lib.NUM_MATERIALS + 1))

    def prim_from_world(self, object_poses: np.ndarray):
        """World -> unit-shape affine of every render row: (A `[R, 3, 3]`, b `[R, 3]`)."""
        linear = self.affine[:, :, :3].copy()
        offset = self.affine[:, :, 3].copy()
        rows = self.moving_rows
        if rows.size:
            pose = object_poses[self.owner[rows]]  # world_from_object
            rot_t = np.transpose(pose[:, :3, :3], (0, 2, 1))  # object_from_world rotation
            linear[rows] = self.affine[rows, :, :3] @ rot_t
            offset[rows] = self.affine[rows, :, 3] - np.einsum(
                "nij,nj->ni", linear[rows], pose[:, :3, 3])
        return linear, offset

    def render(self, world_from_camera: np.ndarray,
               object_poses: np.ndarray) -> Dict[str, np.ndarray]:
        """Renders one view.

        Args:
          world_from_camera: `[4, 4]` camera pose (OpenCV axes).
          object_poses: `[num_objects, 4, 4]` world_from_object of every object track.
        Returns:
          dict: rgb uint8 `[H, W, 3]`; depth float32 `[H, W]` z-depth in metres, 0 = sky;
          label_ids uint8; train_ids uint8 (255 = ignore); instance_ids int32 (0 = none).
        """
        height, width = self.height, self.width
        rotation = world_from_camera[:3, :3]
        center = world_from_camera[:3, 3]
        directions = raycast.world_directions(rotation, self.xn, self.yn)
        zbuffer, rows = raycast.cast_ground(self.scene.street, center, directions)
        linear, offset = self.prim_from_world(object_poses)
        ray_origin = linear @ center + offset
        g = raycast.NUM_GROUND
        raycast.cast_primitives(self.kind[g:], ray_origin[g:], linear[g:] @ rotation,
                                self.intrinsics, self.xn, self.yn, zbuffer, rows, g)

        rgb = np.empty((height * width, 3), np.float32)
        sky = np.flatnonzero(rows < 0)
        if sky.size:
            d = directions[:, sky]
            rgb[sky] = shading.sky(d / np.sqrt(np.sum(d * d, axis=0)), self.scene.noise_table)
        # Hit pixels sorted by render row (radix sort on int16): runs of equal rows.
        hit_rows = rows.astype(np.int16)
        order = np.argsort(hit_rows, kind="stable")[sky.size:]
        if order.size:
            rgb[order] = self._shade(order, rows[order], zbuffer[order], directions[:, order],
                                     center, ray_origin, linear)
        valid = rows >= 0
        safe_rows = np.maximum(rows, 0)
        label = np.where(valid, self.label[safe_rows], np.uint8(_SKY_LABEL))
        shape = (height, width)
        return {
            "rgb": (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(shape + (3,)),
            "depth": np.where(valid, zbuffer, np.float32(0.0)).reshape(shape),
            "label_ids": label.reshape(shape),
            "train_ids": datasets.CITYSCAPES_LABEL_TO_TRAIN[label].reshape(shape),
            "instance_ids": np.where(valid, self.instance[safe_rows], 0).astype(
                np.int32).reshape(shape),
        }

    def _shade(self, pixels, rows, depth, directions, center, ray_origin, linear):
        """Colour `[n, 3]` of hit pixels sorted by render row.

        Computes, per pixel, the hit point and outward normal in the surface's metric frame,
        texture coordinates with their footprints, and the Lambert factor, then runs each
        material's shader on its contiguous slice. Component arrays (`[n]` float32 each) and
        `np.where` over the few surface types keep this vectorised and cheap. The ground rows
        come first in the sort order, so the ground is the prefix `[:num_ground]`.
        """
        f32 = np.float32
        n = len(rows)
        counts = np.bincount(rows, minlength=self.num_rows)
        ng = int(counts[:raycast.NUM_GROUND].sum())
        q = np.empty((3, n), f32)
        normal = np.zeros((3, n), f32)
        face = np.empty(n, np.int8)
        u, v, fu, fv, light = (np.empty(n, f32) for _ in range(5))
        base = depth * self.ray_norm[pixels] * (1.0 / self.focal)
        geometry = (q, normal, face, u, v, fu, fv, light)

        # Ground (world frame): road/sidewalk/terrain tops face up (-Y); curbs face the road.
        g = slice(0, ng)
        d = directions[:, g]
        q[:, g] = center.astype(f32)[:, None] + depth[g] * d
        view = d / np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
        curb = rows[g] == raycast.G_CURB
        face[g] = np.where(curb, 0, 1)
        normal[0, g] = np.where(curb, -np.sign(q[0, g]), f32(0.0))
        normal[1, g] = np.where(curb, f32(0.0), f32(-1.0))
        u[g] = np.where(curb, q[2, g], q[0, g])
        v[g] = np.where(curb, q[1, g], q[2, g])
        cos = np.maximum(np.abs(np.where(curb, view[0], view[1])), _MIN_COS)
        fu[g] = base[g] * np.sqrt(1.0 + (np.where(curb, view[2], view[0]) / cos) ** 2)
        fv[g] = base[g] * np.sqrt(1.0 + (np.where(curb, view[1], view[2]) / cos) ** 2)
        light[g] = shading.lambert(normal[0, g] * f32(shading.SUN[0])
                                   + normal[1, g] * f32(shading.SUN[1]))
        if ng < n:
            self._prim_geometry(slice(ng, n), counts, depth, directions, base, ray_origin,
                                linear, geometry)

        bounds = np.concatenate([[0], np.cumsum(np.bincount(
            self.material, weights=counts, minlength=scene_lib.NUM_MATERIALS)).astype(int)])
        albedo = np.empty((len(rows), 3), f32)
        for mat in range(scene_lib.NUM_MATERIALS):
            lo, hi = bounds[mat], bounds[mat + 1]
            if lo == hi:
                continue
            # The material's rows are contiguous and its pixels sorted by row: per-row
            # constants expand with np.repeat instead of a gather.
            first, last = self.material_rows[mat], self.material_rows[mat + 1]
            run = counts[first:last]
            surface = shading.Surface(
                u=u[lo:hi], v=v[lo:hi], fu=fu[lo:hi], fv=fv[lo:hi], q=q[:, lo:hi],
                normal=normal[:, lo:hi], face=face[lo:hi],
                scale=np.repeat(self.scale_t[:, first:last], run, axis=1),
                color_a=np.repeat(self.color_a[first:last], run, axis=0),
                color_b=np.repeat(self.color_b[first:last], run, axis=0),
                param=np.repeat(self.param[first:last], run, axis=0),
                table=self.scene.noise_table)
            if mat == scene_lib.M_ROAD:
                albedo[lo:hi] = shading.road(surface, self.scene.street.lane_width)
            else:
                albedo[lo:hi] = shading.SHADERS[mat](surface)
        return albedo * light[:, None]

    def _prim_geometry(self, sl, counts, depth, directions, base, ray_origin, linear,
                       geometry):
        """Fills the surface geometry of the primitive pixels `sl` (see `_shade`)."""
        f32 = np.float32
        q_out, normal_out, face_out, u_out, v_out, fu_out, fv_out, light_out = geometry
        counts = counts.copy()
        counts[:raycast.NUM_GROUND] = 0

        def expand(values):  # per-row constant -> per-pixel (pixels are sorted by row)
            return np.repeat(values, counts)

        depth = depth[sl]
        directions = directions[:, sl]
        # Ray in each primitive's unit frame: p = o + t * A d_world.
        lin = linear.reshape(-1, 9).T.astype(f32)
        org = ray_origin.T.astype(f32)
        d = [expand(lin[3 * i]) * directions[0] + expand(lin[3 * i + 1]) * directions[1]
             + expand(lin[3 * i + 2]) * directions[2] for i in range(3)]
        p = [expand(org[i]) + depth * d[i] for i in range(3)]
        scale = [expand(self.scale_t[i]) for i in range(3)]
        q = np.stack([p[i] * scale[i] for i in range(3)])
        view = np.stack([d[i] * scale[i] for i in range(3)])
        view /= np.sqrt(view[0] ** 2 + view[1] ** 2 + view[2] ** 2)

        kind = expand(self.kind)
        ax, ay, az = np.abs(p[0]), np.abs(p[1]), np.abs(p[2])
        box_face = np.where((ax >= ay) & (ax >= az), 0, np.where(ay >= az, 1, 2))
        cyl = kind == scene_lib.KIND_CYLINDER
        cap = cyl & (ay >= np.sqrt(p[0] ** 2 + p[2] ** 2))
        face = np.select([kind == scene_lib.KIND_BOX, cap], [box_face, 1], 3).astype(np.int8)
        flat = face < 3
        curved_normal = kind == scene_lib.KIND_SPHERE
        side = cyl & ~cap
        normal = np.empty((3, len(depth)), f32)
        for i in range(3):
            on_face = np.where(face == i, np.sign(p[i]), f32(0.0))
            around = np.where(curved_normal | (side & (i != 1)), p[i] / scale[i], f32(0.0))
            normal[i] = np.where(flat, on_face, around)
        normal /= np.sqrt(normal[0] ** 2 + normal[1] ** 2 + normal[2] ** 2)

        # Texture coordinates and footprints (see noise.py); flat faces use two metric axes,
        # curved surfaces the arc length around their axis and the height.
        base = base[sl]
        u = np.where(face == 0, q[2], q[0])
        curved = np.flatnonzero(~flat)
        if curved.size:
            u[curved] = np.arctan2(p[0][curved], p[2][curved]) * scale[0][curved]
        v = np.where(face == 1, q[2], q[1])
        v_normal = np.where(face == 0, view[0], np.where(face == 1, view[1], view[2]))
        v_u = np.where(face == 0, view[2], view[0])
        v_v = np.where(face == 1, view[2], view[1])
        cos_flat = np.maximum(np.abs(v_normal), _MIN_COS)
        cos_curved = np.maximum(np.abs(view[0] * normal[0] + view[1] * normal[1]
                                       + view[2] * normal[2]), 0.25)
        fu_out[sl] = np.where(flat, base * np.sqrt(1.0 + (v_u / cos_flat) ** 2),
                              base / cos_curved)
        fv_out[sl] = np.where(flat, base * np.sqrt(1.0 + (v_v / cos_flat) ** 2),
                              base / cos_curved)
        # Sun in each primitive's metric frame: R^T L = diag(scale) A L.
        sun = ((linear @ shading.SUN) * self.scale).T.astype(f32)
        light_out[sl] = shading.lambert(normal[0] * expand(sun[0]) + normal[1] * expand(sun[1])
                                        + normal[2] * expand(sun[2]))
        q_out[:, sl] = q
        normal_out[:, sl] = normal
        face_out[sl] = face
        u_out[sl] = u
        v_out[sl] = v
