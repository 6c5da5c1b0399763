"""mdeaux: reference reproducibility pipeline for Quercia et al.,
"Enhancing Monocular Depth Estimation with Multi-Source Auxiliary Tasks".

Portable numerics: the same bytes and numbers on any x86-64 CPU. numpy, PyTorch, oneDNN and MKL pick
code paths by CPU features (AVX-512 here, AVX2 there), and those paths round differently: the
synthetic world, its statistics and every trained number then differ between two machines of the
same kind. Before any of them is imported, every mdeaux process (and what it starts) pins them to
paths every x86-64-v3 machine has: numpy to its baseline (no runtime dispatch), PyTorch's ATen
kernels, oneDNN and MKL to AVX2, one BLAS thread. Measured on the mini profile: the synthetic world
and a training run take the same time either way. Each variable set beforehand wins.
"""

import os

PORTABLE_NUMERICS = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR",  # numpy 2.4's dispatch targets
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2",  # MKL conditional numerical reproducibility
    "OPENBLAS_NUM_THREADS": "1",
}
for _name, _value in PORTABLE_NUMERICS.items():
    os.environ.setdefault(_name, _value)

__version__ = "0.1.0"
