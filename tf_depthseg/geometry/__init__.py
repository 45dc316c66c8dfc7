"""Camera geometry in TensorFlow: pinhole intrinsics under resize/crop/flip (`intrinsics`),
back-projection and projection (`projection`), rigid SE(3) transforms (`transforms`),
differentiable bilinear sampling (`sampler`) and view synthesis from depth and motion
(`warp`). Pure functions of tensors; the pixel and pose conventions of the whole library are
set here.
"""
