"""benchmark: how fast, how big and how sure. Screen session settings (screen), time every runtime
in interleaved rounds (rounds, timing; calls: what each clock covers), cold starts in fresh
processes (coldstart), the intervals behind every figure (intervals), GPUs and node placement
(providers, placement, gpu_memory), and the one reader of a benchmark report (report)."""
