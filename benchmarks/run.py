"""Run every benchmark: ``python benchmarks/run.py``. Each prints its own baselines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHMARKS = [
    "bench_polling.py",
    "bench_probe.py",
    "bench_batch.py",
    "bench_journal.py",
    # Skipped, with a message, without $OMNI_EDIT_TEST_POSTGRES (a server to use).
    "bench_postgres.py",
    "bench_upload.py",
    "bench_media.py",
]


def main() -> int:
    status = 0
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        status |= subprocess.run([sys.executable, str(HERE / name)], check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
