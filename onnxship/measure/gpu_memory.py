"""GPU memory a process holds, through NVML (pynvml, the `gpu` extra). None where there is no
NVIDIA GPU or no pynvml: callers record the skip, never a zero."""

from __future__ import annotations

GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def process_vram_mb(pid: int) -> float | None:
    """MiB of GPU memory `pid` holds summed over every GPU, or None when NVML cannot say."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no pynvml, no driver, no GPU
        return None
    try:
        used = 0
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory is not None:
                    used += proc.usedGpuMemory
        return used / 2**20
    except Exception:  # e.g. a container that hides other pids: NVML cannot attribute memory
        return None
    finally:
        pynvml.nvmlShutdown()
