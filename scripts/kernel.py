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
3. **Pictures while a cell runs.** evcxr 0.22 sends a cell's rich output once, when the cell
   ends (the last of each MIME type), and knows nothing of `display_id` (evcxr issues #146, #510).
   The launcher stands between Jupyter and evcxr as a message proxy ([`Proxy`]): Jupyter connects
   to the ports of its connection file, which the launcher binds; evcxr gets a connection file of
   its own on other ports, with the same key. Every message on every channel (shell, control,
   stdin, iopub, heartbeat) is forwarded unchanged, frames and signatures included, with one
   exception: a line that fastdet's runtime prints starting with `FASTDET_DISPLAY_V1 ` (evcxr
   sends each printed line at once as a `stream` message of the running cell) is turned into a
   `display_data` or, for an update, `update_display_data` message carrying that cell's parent
   header and `transient.display_id`, signed with the connection's key. The launcher sets
   `FASTDET_DISPLAY=stdout-v1` for evcxr, and fastdet prints those lines only when it is set:
   with plain evcxr, or outside Jupyter, fastdet's `display` falls back to evcxr's own protocol
   (shown when the cell ends) or to text. A marked line that does not parse is dropped with a
   line in this log (the Jupyter server's console) and never reaches Jupyter.
   Why a proxy and not a patch to evcxr: the marked lines travel through the same pipe as the
   cell's printed lines, so pictures and text keep their order; a line printed by a thread after
   its cell ended (a fit in the background) still reaches evcxr, which sends it with the latest
   cell's header, and `update_display_data` is routed by its `display_id` to wherever that output
   is; nothing of evcxr is rebuilt or forked, so a new evcxr release needs no patch, and a user
   with stock evcxr loses the live output, nothing else. (A patch to evcxr would need a fork
   built from source and kept up with upstream until it lands there.)
4. The launcher passes SIGTERM/SIGHUP on to evcxr and ends when evcxr ends; evcxr dies with the
   launcher (PR_SET_PDEATHSIG), so no kernel is left behind.

Without pyzmq and jupyter_client (which Jupyter itself needs, so never in practice), or with a
connection file that is not TCP, it runs evcxr on Jupyter's own connection file, without 3.

Usage (the kernelspec's argv): kernel.py <evcxr_jupyter> --control_file {connection_file}
"""
import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import socket
import sys
import tempfile
import threading
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


PRUNE_DAYS = 7  # incremental caches of crates no build has used for this long are removed


def prune(slot: Path, now=None):
    """Drop what only an ended kernel or a long-unused build needs, so a slot (and every slot
    seeded from it) does not grow with each session and each checkout: evcxr's per-cell
    libraries (`libcode_*`, written again by the next session) and cargo's incremental caches
    (`incremental/<crate>-<hash>`, one per crate and checkout path) not touched for PRUNE_DAYS.
    Called on a slot this process holds the lock of; cargo rebuilds whatever it still needs.
    Returns the bytes freed."""
    now = time.time() if now is None else now
    freed = 0

    def size(p: Path) -> int:
        if p.is_file():
            return p.stat().st_size
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and not f.is_symlink())

    target = slot / "target"
    for lib in target.glob("*/debug/libcode_*"):
        freed += size(lib)
        lib.unlink(missing_ok=True)
    for inc in target.glob("*/debug/incremental/*"):
        if inc.is_dir() and now - inc.stat().st_mtime > PRUNE_DAYS * 86400:
            freed += size(inc)
            shutil.rmtree(inc, ignore_errors=True)
    return freed


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
        freed = prune(slot)
        if freed > 1 << 30:
            log(f"freed {freed / (1 << 30):.1f} GB of old build files in {slot.name}")
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


# ---------------------------------------------------------------------------------------------
# 3. The message proxy

DISPLAY_MARK = b"FASTDET_DISPLAY_V1 "
DISPLAY_ENV = "stdout-v1"  # the value of FASTDET_DISPLAY that fastdet's runtime looks for
DELIM = b"<IDS|MSG>"


def free_ports(n, ip="127.0.0.1", avoid=()):
    """`n` ports free now, none of them in `avoid` (Jupyter's ports for this kernel, which
    Jupyter has released and the proxy binds only later: the system may hand them out again)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            socks.append(s)  # held until all are chosen, so none comes back twice
            s.bind((ip, 0))
            port = s.getsockname()[1]
            if port not in avoid:
                ports.append(port)
        return ports
    finally:
        for s in socks:
            s.close()


IDLE_QUIET_S = 0.1
IDLE_HOLD_MAX_S = 3.0


def is_status(frames, state=None):
    """Whether iopub `frames` are a status message (in `state`, if given)."""
    try:
        i = frames.index(DELIM)
        if json.loads(frames[i + 2]).get("msg_type") != "status":
            return False
        return state is None or json.loads(frames[i + 5]).get("execution_state") == state
    except (ValueError, IndexError, AttributeError):
        return False


class Proxy:
    """Jupyter's sockets (bound on the ports of `conn`, Jupyter's connection file) forwarded to
    and from a kernel listening on the ports of `inner` (a connection file with the same key).
    Frames pass unchanged; fastdet's marked stream lines on iopub become display messages."""

    CHANNELS = ("shell", "control", "stdin", "iopub", "hb")

    def __init__(self, conn: dict, inner: dict):
        import zmq
        from jupyter_client.session import Session

        self.zmq = zmq
        self.ctx = zmq.Context()
        self.session = Session(key=conn.get("key", "").encode(), signature_scheme=conn.get("signature_scheme", "hmac-sha256"),
                               username="fastdet")
        url = lambda c, port: f"{c['transport']}://{c['ip']}:{port}"
        self.front, self.back = {}, {}
        ident = f"fastdet-proxy-{os.getpid()}".encode()
        for ch, front_type, back_type in (("shell", zmq.ROUTER, zmq.DEALER), ("control", zmq.ROUTER, zmq.DEALER),
                                          ("stdin", zmq.ROUTER, zmq.DEALER), ("iopub", zmq.PUB, zmq.SUB),
                                          ("hb", zmq.REP, zmq.REQ)):
            f = self.ctx.socket(front_type)
            f.linger = 1000
            f.bind(url(conn, conn[f"{ch}_port"]))
            b = self.ctx.socket(back_type)
            b.linger = 0
            if back_type == zmq.DEALER:
                # One identity for shell and stdin: evcxr answers an input request on stdin to the
                # identities of the execute request that came on shell.
                b.setsockopt(zmq.IDENTITY, ident)
            if back_type == zmq.SUB:
                b.setsockopt(zmq.SUBSCRIBE, b"")
            b.connect(url(inner, inner[f"{ch}_port"]))
            self.front[ch], self.back[ch] = f, b
        self.dropped = 0
        self.stopping = threading.Event()

    # -- the iopub filter ------------------------------------------------------------------
    def convert(self, frames):
        """The frames to publish for one iopub message of the kernel: unchanged, or (for a
        stream message with marked lines) display messages and the rest of the text."""
        try:
            i = frames.index(DELIM)
        except ValueError:
            return [frames]
        if len(frames) < i + 6 or DISPLAY_MARK not in frames[i + 5]:
            return [frames]
        try:
            msg = self.session.deserialize(frames[i + 1:], content=True)
        except Exception as e:  # a bad signature: not ours to judge, pass it on
            log(f"iopub message not understood ({e}); passed on unchanged")
            return [frames]
        if msg["header"]["msg_type"] != "stream":
            return [frames]
        out, plain = [], []
        for line in msg["content"]["text"].splitlines(keepends=True):
            if not line.startswith(DISPLAY_MARK.decode()):
                plain.append(line)
                continue
            display = self.display_message(line[len(DISPLAY_MARK):], msg["parent_header"])
            if display is not None:
                if plain:
                    out.append(self.stream(msg, "".join(plain)))
                    plain = []
                out.append(display)
        if plain:
            out.append(self.stream(msg, "".join(plain)))
        return out

    def display_message(self, payload: str, parent: dict):
        """A marked line's JSON, {"id", "update", "data", "metadata"?}, as signed frames of a
        display_data / update_display_data message; None (and a log line) when malformed."""
        try:
            d = json.loads(payload)
            if not isinstance(d, dict):
                raise ValueError("not a JSON object")
            data, did, update = d["data"], d["id"], d.get("update", False)
            if not isinstance(data, dict) or not data or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
                raise ValueError("'data' must map MIME types to strings")
            if not isinstance(did, str) or not did or not isinstance(update, bool):
                raise ValueError("'id' must be a non-empty string and 'update' a boolean")
        except (ValueError, KeyError, TypeError) as e:
            self.dropped += 1
            log(f"dropped a malformed display message from fastdet ({e}): {payload[:120]!r}")
            return None
        kind = "update_display_data" if update else "display_data"
        content = {"data": data, "metadata": d.get("metadata") or {}, "transient": {"display_id": did}}
        msg = self.session.msg(kind, content=content, parent=parent)
        return [kind.encode(), DELIM] + self.session.serialize(msg)[1:]

    def stream(self, msg, text):
        m = self.session.msg("stream", content=dict(msg["content"], text=text), parent=msg["parent_header"])
        return [b"stream", DELIM] + self.session.serialize(m)[1:]

    # -- the loop --------------------------------------------------------------------------
    def run(self):
        zmq = self.zmq
        poller = zmq.Poller()
        route = {}
        for ch in self.CHANNELS:
            if ch != "iopub":
                poller.register(self.front[ch], zmq.POLLIN)
                route[self.front[ch]] = (ch, self.back[ch])
            poller.register(self.back[ch], zmq.POLLIN)
            route[self.back[ch]] = (ch, self.front[ch])
        # evcxr sends a cell's `idle` status from one task and the cell's printed lines from
        # another: on a loaded machine the last lines (a fit's final report) can come after the
        # idle, and a client that stops reading at idle (nbclient, the tests) loses them. So an
        # idle waits until iopub has been quiet for IDLE_QUIET_S (at most IDLE_HOLD_MAX_S).
        held, held_at, last_iopub = None, 0.0, 0.0
        while not self.stopping.is_set():
            try:
                ready = dict(poller.poll(20 if held else 200))
            except zmq.ZMQError:
                break
            for sock in ready:
                ch, dest = route[sock]
                try:
                    frames = sock.recv_multipart(copy=True)
                except zmq.ZMQError:
                    continue
                if ch == "iopub":
                    last_iopub = time.monotonic()
                    if held is not None and is_status(frames):
                        dest.send_multipart(held)  # the next cell's busy: the idle goes first
                        held = None
                    if is_status(frames, "idle"):
                        held, held_at = frames, last_iopub
                        continue
                    for f in self.convert(frames):
                        dest.send_multipart(f)
                else:
                    dest.send_multipart(frames)
            now = time.monotonic()
            if held is not None and (now - last_iopub >= IDLE_QUIET_S or now - held_at >= IDLE_HOLD_MAX_S):
                self.front["iopub"].send_multipart(held)
                held = None
        if held is not None:
            self.front["iopub"].send_multipart(held)

    def drain_and_close(self, quiet_s=0.3):
        """Forward what is still queued (evcxr's last replies), then close the sockets."""
        time.sleep(quiet_s)
        self.stopping.set()

    def close(self):
        for s in list(self.front.values()) + list(self.back.values()):
            s.close(linger=200)
        self.ctx.term()


def start_proxy(argv, slot: Path):
    """Replace Jupyter's connection file in evcxr's argv by one on new ports and start the proxy
    between the two; (argv for evcxr, the proxy's thread) or (argv, None) when it cannot run."""
    try:
        k = argv.index("--control_file") + 1
        conn = json.loads(Path(argv[k]).read_text())
        if conn.get("transport", "tcp") != "tcp":
            raise ValueError(f"transport {conn.get('transport')!r} is not tcp")
        import zmq  # noqa: F401  (pyzmq comes with Jupyter)
        from jupyter_client.session import Session  # noqa: F401
    except (ValueError, IndexError, OSError, ImportError) as e:
        log(f"no display proxy ({e}): pictures show when a cell ends")
        return argv, None
    inner = dict(conn, ip="127.0.0.1", transport="tcp")
    front = {conn.get(f"{ch}_port") for ch in Proxy.CHANNELS}
    for ch, port in zip(Proxy.CHANNELS, free_ports(5, avoid=front)):
        inner[f"{ch}_port"] = port
    fd, path = tempfile.mkstemp(prefix="fastdet-evcxr-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(inner, f)
    proxy = Proxy(conn, inner)
    proxy.inner_file = path
    thread = threading.Thread(target=proxy.run, name="fastdet-proxy", daemon=True)
    thread.start()
    return argv[:k] + [path] + argv[k + 1:], (proxy, thread)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    pool = Path(os.environ.get("FASTDET_EVCXR_POOL") or Path.home() / ".cache" / "fastdet" / "evcxr-pool")
    slot, _lock = take_slot(pool)
    env = dict(os.environ, EVCXR_TMPDIR=str(slot))
    log(f"compile folder {slot}")
    args, proxied = start_proxy(argv[1:], slot)
    if proxied:
        env["FASTDET_DISPLAY"] = DISPLAY_ENV
    evcxr = subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=die_with_parent)

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
            rc = evcxr.wait()
            break
        except InterruptedError:
            continue
    if proxied:
        proxy, thread = proxied
        proxy.drain_and_close()
        thread.join(timeout=2)
        proxy.close()
        os.unlink(proxy.inner_file)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv))
