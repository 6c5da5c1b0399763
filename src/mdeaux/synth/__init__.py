"""The synthetic "mini world": procedural indoor rooms written in official dataset formats.

``mdeaux.synth.render`` draws and ray casts rooms; ``mdeaux.synth.writers`` writes the NYUv2 and
ADE20K archives and the checksummed mirror the fetch stage reads.
"""

from mdeaux.synth.render import Frame, nyu_intrinsics, render_frame, sample_camera, sample_room
from mdeaux.synth.writers import derive_seed, write_ade20k_archive, write_mirror, write_nyuv2_archive

__all__ = [
    "Frame",
    "derive_seed",
    "nyu_intrinsics",
    "render_frame",
    "sample_camera",
    "sample_room",
    "write_ade20k_archive",
    "write_mirror",
    "write_nyuv2_archive",
]
