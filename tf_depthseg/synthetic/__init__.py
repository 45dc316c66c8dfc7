"""Synthetic street drives with exact depth, poses, labels and object motion (numpy only).

Procedural 3D street scenes (road with markings, curbs and sidewalks, buildings with brick and
windows, trees, hedges, walls, fences, poles with signs and traffic lights, terrain, sky, parked
and moving cars, pedestrians, cyclists) are ray-cast in vectorised numpy. Textures are anchored
on the surfaces and lighting is a fixed sun, so static surfaces are photometrically consistent
across frames and view synthesis can be checked exactly; every object moves rigidly.

    from tf_depthseg import synthetic
    drive = synthetic.generate_drive(synthetic.SceneConfig(frames_per_drive=5), seed=3)
    frame = drive.frames[0]   # frame.rgb, frame.depth, frame.label_ids, frame.train_ids, ...

Conventions: camera axes are OpenCV (x right, y down, z forward); depth is z-depth in metres,
0 on sky; `label_ids` are Cityscapes label ids, `train_ids` the 19-class train ids (255 =
ignore); `instance_ids` follow Cityscapes' `label_id * 1000 + k` (k >= 1) on person, rider, car
and bicycle pixels and 0 elsewhere. The camera is KITTI-like (intrinsics of KITTI's camera 02
scaled to the requested size, 1.65 m above the road, ~1 m per frame).

Modules: `scene` (layout, config), `raycast` (geometry), `shading` (materials), `noise`
(filtered procedural textures), `render` (per-view assembly), `drive` (frames and tracks of a
whole drive), and `layouts` (writers that store drives in the file layout of each real dataset,
which the converters read; not imported here).
"""

from tf_depthseg.synthetic.drive import Drive, Frame, generate_drive, object_poses_at, render_frame
from tf_depthseg.synthetic.render import Renderer
from tf_depthseg.synthetic.scene import (INSTANCE_LABEL_IDS, LABEL_IDS, ObjectTrack, Scene,
                                         SceneConfig, build_scene, camera_intrinsics)

__all__ = ["Drive", "Frame", "INSTANCE_LABEL_IDS", "LABEL_IDS", "ObjectTrack", "Renderer",
           "Scene", "SceneConfig", "build_scene", "camera_intrinsics", "generate_drive",
           "object_poses_at", "render_frame"]
