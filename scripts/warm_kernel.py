#!/usr/bin/env python3
"""Compile fastdet and its dependencies for the notebooks once, during `make setup`, so that the
first notebook cell of a new machine takes seconds instead of minutes: start the "Rust (fastdet)"
kernel and run the first two cells every notebook has. Does nothing when the launcher's pool
already has a warm compile folder (a second run takes a second).

    python scripts/warm_kernel.py <crate root>
"""
import os
import sys
import time
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

KERNEL = "fastdet-rust"


def main(root: Path):
    spec = KernelSpecManager().get_kernel_spec(KERNEL)
    pool = Path(spec.env["FASTDET_EVCXR_POOL"])
    if any(pool.glob("slot-*/target")):
        return 0
    print("[setup] compiling fastdet for the notebooks' kernel (about 4 minutes, once per machine)", flush=True)
    t = time.time()
    km = KernelManager(kernel_name=KERNEL)
    km.start_kernel(cwd=str(root / "notebooks"))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        for code in (':dep fastdet = { path = ".." }', "use fastdet::prelude::*;"):
            reply = kc.execute_interactive(code, timeout=1800, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                print(f"[setup] warning: warming the kernel failed at {code!r}: {reply['content'].get('evalue', '')}", flush=True)
                return 0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    print(f"[setup] kernel warm in {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
