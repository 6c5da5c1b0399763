"""mdeaux: reference reproducibility pipeline for Quercia et al.,
"Enhancing Monocular Depth Estimation with Multi-Source Auxiliary Tasks"."""

__version__ = "0.1.0"
