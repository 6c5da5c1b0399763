"""The synthetic "mini world": procedural indoor rooms and outdoor scenes written in official dataset formats.

Modules, lowest first (each imports only modules above it):

* ``camera``, ``primitives``, ``textures``, ``sensor``: pinhole cameras, ray-primitive intersection,
  procedural textures and sensor models shared by both worlds;
* ``room``, ``room_shading``, ``render``: indoor rooms, their surface colours, and ``render_frame``;
* ``outdoor_scene``, ``outdoor_shading``, ``outdoor``: outdoor scenes, their colours, ``render_outdoor``
  and LiDAR-like sparse depth;
* ``archive``: deterministic encodings, archive helpers and the worker pool shared by every writer;
* per-family writers: ``nyu_ade``, ``nyu_labeled``, ``sunrgbd``, ``indoor_depth``, ``lidar_depth``,
  ``seg_sets``, ``cityscapes``;
* ``mirror``: the registry of every dataset's writer and ``write_mirror`` (checksummed mirror folders).

This package module imports nothing, so importing one submodule does not load the others.
"""
