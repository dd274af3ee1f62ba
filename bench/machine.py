"""What every benchmark line records about the machine it ran on."""

import os
import platform
from pathlib import Path

import torch


def machine(device: str) -> dict:
    """CPU model, cores, torch threads and version, load (other work skews figures), and the GPU if used."""
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.is_file() else []
    info = {"cpu": names[0] if names else platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_avg_1min": round(os.getloadavg()[0], 2)}
    if str(device).startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def reset_peak_rss() -> bool:
    """Restart this process's peak-RSS count (Linux: VmHWM), like torch.cuda.reset_peak_memory_stats: what is
    measured after it excludes the setup before (e.g. a model built on the host before it is placed)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """The peak RSS in MB since the start or the last reset_peak_rss (ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
