"""Numeric-kernel pins that make trained weights the same bytes on every x86-64 machine.

OpenBLAS picks its kernels by CPU, and the kernels round differently: the Ridge meta-model of
stack_ridge came out with other last bits (so other file bytes) per CPU type; training on the one
kernel every x86-64 CPU has makes the saved models the same everywhere. The same for PyTorch:
MKL's conditional numerical reproducibility mode, ATen's portable (non-vectorised) CPU kernels
and oneDNN's baseline instruction set give the same weights on every x86-64 CPU, where AVX2 and
AVX-512 kernels round differently. The libraries read these when they load, so they are set
before the first import (stages/train.py) and given to a warm server's environment
(stages/__main__.py). Train-only: benchmark and serving keep the fast native kernels.
The other stages' servers take QUIET_OPENMP instead.
"""

TORCH_KERNELS = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
REPRODUCIBLE_KERNELS = {"OPENBLAS_CORETYPE": "Prescott", **TORCH_KERNELS}  # train; checkpoint: torch's
# Every other stage: OpenMP threads sleep between calls instead of spinning, as the benchmark
# times native (ORT spinning off; an idle runtime takes no core from the one being timed). OpenMP
# reads it when it loads, so a warm server that preloaded PyTorch must have started with it: the
# benchmark's native timing worker is then a fork of the stage (onnxship.measure.rounds), its
# libraries already imported
QUIET_OPENMP = {"OMP_WAIT_POLICY": "PASSIVE"}
