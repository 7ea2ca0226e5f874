#!/usr/bin/env python3
"""The "Rust (fastdet)" kernel's launcher: what the kernelspec runs instead of evcxr_jupyter.

1. **One compile folder per running kernel.** evcxr allows one kernel per `EVCXR_TMPDIR`; two
   kernels sharing one break each other's builds. The launcher takes a free slot of a pool
   (`$FASTDET_EVCXR_POOL/slot-<n>`, a file lock held for the kernel's life) and gives it to
   evcxr as `EVCXR_TMPDIR`. A slot that was never used is seeded from the most recently used
   one, so a second kernel starts warm instead of compiling fastdet and its dependencies again.
2. **The stop button stops gently.** The kernelspec says `"interrupt_mode": "signal"`, so Jupyter
   sends SIGINT to this process (its whole process group). evcxr runs in a session of its own,
   out of reach of that signal; the launcher forwards SIGINT to evcxr's runtime process (the one
   that runs the cells), where fastdet's `fit` and `lr_find` stop after the current batch and the
   cell returns with the learner intact. Outside those loops the runtime process ends as with
   evcxr's own interrupt (its variables are lost, the kernel lives on).
3. The launcher passes SIGTERM/SIGHUP on to evcxr and ends when evcxr ends; evcxr dies with the
   launcher (PR_SET_PDEATHSIG), so no kernel is left behind.

Usage (the kernelspec's argv): kernel.py <evcxr_jupyter> --control_file {connection_file}
"""
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_SLOTS = 32
MARK = ".fastdet-last-used"  # touched when a kernel takes the slot


def log(msg):
    print(f"[fastdet kernel] {msg}", file=sys.stderr, flush=True)


def is_warm(slot: Path) -> bool:
    return (slot / "target").is_dir()


def seed(slot: Path, pool: Path):
    """Copy the most recently used warm slot into `slot` (which does not exist yet)."""
    warm = [p for p in pool.glob("slot-*") if p.is_dir() and is_warm(p) and p != slot]
    if not warm:
        return
    src = max(warm, key=lambda p: (p / MARK).stat().st_mtime if (p / MARK).exists() else 0)
    tmp = pool / f".seed-{slot.name}-{os.getpid()}"
    t = time.time()
    try:
        # The source may be compiling at this moment: cargo rebuilds whatever was half-written
        # (its fingerprints are written after the artefacts), so a copy is never wrong, at worst
        # less warm. The slot's Cargo.lock comes too: without it cargo resolves the versions
        # again and rebuilds every dependency (cargo's own `.cargo-lock` files stay behind).
        shutil.copytree(src, tmp, symlinks=True, ignore=shutil.ignore_patterns(".cargo-lock", ".seed-*"))
        tmp.rename(slot)
        log(f"seeded {slot.name} from {src.name} in {time.time() - t:.1f} s")
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"could not seed {slot.name} from {src.name} ({e}); it starts cold")


def take_slot(pool: Path):
    """A free slot of the pool, locked for this process's life: (slot folder, lock file)."""
    pool.mkdir(parents=True, exist_ok=True)
    for n in range(MAX_SLOTS):
        lock = open(pool / f"slot-{n}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        slot = pool / f"slot-{n}"
        if not slot.is_dir():
            seed(slot, pool)
            slot.mkdir(exist_ok=True)
        (slot / MARK).touch()
        return slot, lock
    raise SystemExit(f"[fastdet kernel] all {MAX_SLOTS} compile slots of {pool} are in use")


def children(pid: int):
    """The direct children of `pid` (Linux /proc)."""
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def die_with_parent():
    # PR_SET_PDEATHSIG = 1: evcxr gets SIGKILL when the launcher dies, however it dies.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    pool = Path(os.environ.get("FASTDET_EVCXR_POOL") or Path.home() / ".cache" / "fastdet" / "evcxr-pool")
    slot, _lock = take_slot(pool)
    env = dict(os.environ, EVCXR_TMPDIR=str(slot))
    log(f"compile folder {slot}")
    evcxr = subprocess.Popen(argv[1:], env=env, start_new_session=True, preexec_fn=die_with_parent)

    def interrupt(signum, frame):
        runtimes = children(evcxr.pid)
        for pid in runtimes:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        log(f"interrupt passed to {runtimes or 'no running cell'}")

    def terminate(signum, frame):
        evcxr.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    while True:
        try:
            return evcxr.wait()
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv))
