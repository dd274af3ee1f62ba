#!/usr/bin/env python3
"""Write .whl/: the wheels bench/gpu_check.py installs on a GPU machine that has only torch & co. preinstalled.

The set is the dependency closure of what the checks import (bench/gpu_check.py NEEDED), at the exact versions
of this environment (constraints.txt), minus the GPU machine's preinstalled packages and everything they pull in.
Binary wheels are downloaded for the target Python and platform; a package published only as a source archive
must be pure Python and is built into a wheel here. Fails when the folder would exceed --max-mb.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PREINSTALLED = ("torch", "torchaudio", "numpy", "h5py", "tensorboard", "safetensors", "huggingface_hub")
# import name -> distribution name, for the modules bench/gpu_check.py needs
DISTRIBUTIONS = {"yaml": "PyYAML", "eng_to_ipa": "eng-to-ipa", "unidecode": "Unidecode",
                 "python_multipart": "python-multipart"}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], python: str) -> dict[str, str]:
    """{normalized name: installed version} of roots and their requirements (markers for Linux, `python`)."""
    env = {"python_version": python, "python_full_version": python + ".0", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
           "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    seen: dict[str, str] = {}
    todo = list(roots)
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise SystemExit(f"{name} is not installed here: run `make setup` first") from None
        seen[name] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                todo.append(req.name)
    return seen


def main() -> None:
    from bench.gpu_check import NEEDED

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dest", default=str(REPO / ".whl"), help="the wheel folder [.whl]")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python [3.12]")
    p.add_argument("--platform", default="x86_64", help="the GPU machine's CPU architecture [x86_64]")
    p.add_argument("--max-mb", type=float, default=60.0, help="refuse a bigger folder [60]")
    args = p.parse_args()
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    # torch's own requirements are surely there; the other packages' requirements are installed anyway (their
    # versions on the GPU machine are unknown), ahead of what is there on sys.path
    have = closure(["torch", "torchaudio", "numpy"], args.python_version) | {norm(n): "" for n in PREINSTALLED}
    need = {n: v for n, v in closure([DISTRIBUTIONS.get(m, m) for m in NEEDED], args.python_version).items()
            if n not in have}
    abi = "cp" + args.python_version.replace(".", "")
    platforms = [f"{tag}_{args.platform}" for tag in ("manylinux_2_28", "manylinux_2_17", "manylinux2014")]
    for name, version in sorted(need.items()):
        download = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--python-version", args.python_version, "--implementation", "cp", "--abi", abi, "--abi", "abi3",
                    "--abi", "none", *[a for plat in platforms for a in ("--platform", plat)], "-d", str(dest),
                    f"{name}=={version}"]
        if subprocess.run(download, capture_output=True).returncode == 0:
            continue
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary", name,
                                "-w", str(dest), f"{name}=={version}"], capture_output=True, text=True)
        if built.returncode != 0:
            raise SystemExit(f"{name}=={version}: no wheel for Python {args.python_version} and no buildable "
                             f"source:\n{built.stderr[-2000:]}")
        wheel = max(dest.glob(f"{name.replace('-', '_')}-*.whl"), key=lambda f: f.stat().st_mtime, default=None)
        if wheel is None or not wheel.name.endswith("-none-any.whl"):
            raise SystemExit(f"{name}=={version}: built {wheel}, which is not pure Python: it would not install there")
    size = sum(f.stat().st_size for f in dest.glob("*.whl")) / 2**20
    print(f"{dest}: {len(list(dest.glob('*.whl')))} wheels, {size:.1f} MB for Python {args.python_version} "
          f"({', '.join(f'{n}=={v}' for n, v in sorted(need.items()))})")
    if size > args.max_mb:
        raise SystemExit(f"{dest} holds {size:.1f} MB, more than --max-mb {args.max_mb}")


if __name__ == "__main__":
    main()
