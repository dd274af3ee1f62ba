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
