"""GPU execution providers: which of the wanted ones can run here, and a plain reason for each
that cannot (no onnxruntime-gpu, no NVIDIA GPU), so a report says why a GPU figure is missing."""

from __future__ import annotations


def gpu_count() -> int:
    """NVIDIA GPUs visible to this process (0 without pynvml or a driver)."""
    try:
        import pynvml
    except ImportError:
        return 0
    try:
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except pynvml.NVMLError:
        return 0


def usable_gpu_providers(wanted: list[str]) -> tuple[list[str], dict[str, str]]:
    """(providers to benchmark, {provider: why it is skipped})."""
    import onnxruntime as ort

    available = set(ort.get_available_providers())
    gpus = gpu_count() if wanted else 0
    usable, skipped = [], {}
    for provider in wanted:
        if provider not in available:
            skipped[provider] = (
                f"skipped: this onnxruntime has no {provider} "
                "(install the gpu extra, onnxruntime-gpu, on a machine with an NVIDIA GPU)"
            )
        elif gpus == 0:
            skipped[provider] = f"skipped: {provider} is built in, but no NVIDIA GPU was found (pynvml)"
        else:
            usable.append(provider)
    return usable, skipped
