"""Drive a "Rust (fastdet)" kernel cell by cell through jupyter_client, as a user would from a
notebook: used by the kernel tests (tests/test_kernel.py) and the kernel bench
(benches/kernel.py)."""
import time
from pathlib import Path

from jupyter_client.manager import KernelManager

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "fastdet-rust"
NOTEBOOKS = ROOT / "notebooks"


class Cell:
    """What a cell showed, as a notebook shows it: `outputs` in order (stream text, displays with
    each display's newest content after its updates, the cell's value), and every display
    message with its arrival time (`messages`: (seconds since the cell began, msg_type,
    display_id or None, data))."""

    def __init__(self, outputs, error, seconds, messages):
        self.outputs, self.error, self.seconds, self.messages = outputs, error, seconds, messages
        self.text = "".join(o["text"] if o["type"] == "stream" else o["data"].get("text/plain", "") for o in outputs)
        self.images = sum(o["type"] != "stream" and "image/png" in o["data"] for o in outputs)

    def displays(self):
        return [o for o in self.outputs if o["type"] != "stream"]

    def updates(self, display_id=None):
        return [m for m in self.messages if m[1] == "update_display_data" and display_id in (None, m[2])]

    def ok(self):
        assert self.error is None, self.error
        return self


class Kernel:
    """One kernel of the Rust (fastdet) kernelspec, driven cell by cell."""

    def __init__(self, cwd=NOTEBOOKS, kernel_name=KERNEL, ksm=None):
        kw = {"kernel_name": kernel_name}
        if ksm is not None:
            kw["kernel_spec_manager"] = ksm
        self.km = KernelManager(**kw)
        self.km.start_kernel(cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code, timeout=1200, when=None, then=None):
        """Execute `code`; when `when(text so far)` first holds, call `then()` (an interrupt).
        Updates of a display (update_display_data) replace it in place wherever they come from,
        as in JupyterLab; other messages count when they belong to this cell."""
        msg_id = self.kc.execute(code)
        outputs, messages, err, fired = [], [], None, False
        text = lambda: Cell(outputs, None, 0, []).text
        t = time.time()
        while True:
            left = timeout - (time.time() - t)
            assert left > 0, f"cell timed out after {timeout} s: {code[:80]}\n{text()[-2000:]}"
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 5))
            except Exception:  # queue.Empty: no message for 5 s
                if when and not fired and when(text()):
                    fired = True
                    then()
                continue
            kind, c = msg["msg_type"], msg["content"]
            did = (c.get("transient") or {}).get("display_id") if isinstance(c, dict) else None
            if kind == "update_display_data":
                messages.append((time.time() - t, kind, did, c["data"]))
                for o in outputs:
                    if o.get("id") == did:
                        o["data"] = c["data"]
            elif msg["parent_header"].get("msg_id") != msg_id:
                continue
            elif kind == "stream":
                outputs.append({"type": "stream", "text": c["text"]})
            elif kind in ("execute_result", "display_data"):
                messages.append((time.time() - t, kind, did, c["data"]))
                outputs.append({"type": kind, "id": did, "data": c["data"]})
            elif kind == "error":
                err = f"{c['ename']}: {c['evalue']}\n" + "\n".join(c.get("traceback", []))
            elif kind == "status" and c["execution_state"] == "idle":
                break
            if when and not fired and when(text()):
                fired = True
                then()
        return Cell(outputs, err, time.time() - t, messages)

    def restart(self):
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=120)

    def shutdown(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
