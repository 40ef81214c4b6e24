"""What the benchmarks need, prepared from a clean checkout: their own virtual environment
(pycluster plus the peers, pinned), wrk from Debian's packages, and a description of the machine.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv-bench"
#: The peers and the chart library, pinned so that a rerun measures the same code.
PACKAGES = [
    "gunicorn==27.0.1",
    "uvicorn[standard]==0.54.0",
    "uvloop==0.23.0",
    "httptools==0.9.0",
    "granian==2.8.9",
    "matplotlib==3.11.2",
    "prometheus_client==0.26.0",  # the workers' own metrics in the metrics scenario
]


def in_bench_venv() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def ensure_venv() -> Path:
    """Create (or update) .venv-bench; return its python."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    wanted = "\n".join(PACKAGES)
    if stamp.exists() and stamp.read_text() == wanted:
        return python
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", str(ROOT), *PACKAGES], check=True)
    stamp.write_text(wanted)
    return python


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
        wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed and apt-get could not install it")
    return wrk


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "missing"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.stdout or out.stderr else "?"


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{os.cpu_count()} x {model}",
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "node": _version(["node", "--version"]),
        "wrk": _version(["wrk", "--version"]).split(" Copyright")[0],
    }
