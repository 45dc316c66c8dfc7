"""A drive: lay out a scene (`scene`), render every frame (`render`), keep the tracks.

`generate_drive` is the generator's entry point (re-exported by the package).
"""

from __future__ import annotations

import dataclasses
from typing import List

import numpy as np

from tf_depthseg.synthetic.render import Renderer
from tf_depthseg.synthetic.scene import ObjectTrack, Scene, SceneConfig, build_scene


@dataclasses.dataclass
class Frame:
    """One rendered frame.

    Attributes:
      rgb: uint8 `[H, W, 3]`.
      depth: float32 `[H, W]` z-depth in metres, 0 = sky (invalid).
      label_ids: uint8 `[H, W]` Cityscapes label ids.
      train_ids: uint8 `[H, W]` Cityscapes train ids, 255 = ignore.
      instance_ids: int32 `[H, W]` label_id * 1000 + k on person/rider/car/bicycle, else 0.
      world_from_camera: float64 `[4, 4]`.
    """

    rgb: np.ndarray
    depth: np.ndarray
    label_ids: np.ndarray
    train_ids: np.ndarray
    instance_ids: np.ndarray
    world_from_camera: np.ndarray


@dataclasses.dataclass
class Drive:
    """A synthetic drive: frames, intrinsics, and every object's per-frame pose.

    Attributes:
      intrinsics: float64 `[3, 3]` for the frames' size.
      frames: T frames in driving order.
      objects: tracks of all cars, pedestrians, riders and bicycles (moving or not); the
        instance ids in the frames refer to `ObjectTrack.instance_id`.
      seed: the seed the drive was generated from.
      config: the SceneConfig used.
    """

    intrinsics: np.ndarray
    frames: List[Frame]
    objects: List[ObjectTrack]
    seed: int
    config: SceneConfig


def object_poses_at(scene: Scene, frame_index: int) -> np.ndarray:
    """world_from_object `[num_objects, 4, 4]` of every track at `frame_index`."""
    if not scene.objects:
        return np.zeros((0, 4, 4))
    return np.stack([track.world_from_object[frame_index] for track in scene.objects])


def render_frame(scene: Scene, frame_index: int, renderer: Renderer = None) -> Frame:
    """Renders frame `frame_index` of a laid-out scene."""
    renderer = renderer or Renderer(scene)
    pose = scene.world_from_camera[frame_index]
    out = renderer.render(pose, object_poses_at(scene, frame_index))
    return Frame(rgb=out["rgb"], depth=out["depth"], label_ids=out["label_ids"],
                 train_ids=out["train_ids"], instance_ids=out["instance_ids"],
                 world_from_camera=pose.copy())


def generate_drive(config: SceneConfig, seed: int) -> Drive:
    """Lays out and renders one drive; identical output for identical (config, seed)."""
    scene = build_scene(config, seed)
    renderer = Renderer(scene)
    frames = [render_frame(scene, t, renderer) for t in range(config.frames_per_drive)]
    return Drive(intrinsics=scene.intrinsics.copy(), frames=frames, objects=scene.objects,
                 seed=int(seed), config=config)
