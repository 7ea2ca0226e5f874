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
    def __init__(self, text, error, seconds, images):
        self.text, self.error, self.seconds, self.images = text, error, seconds, images

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
        """Execute `code`; when `when(text so far)` first holds, call `then()` (an interrupt)."""
        msg_id = self.kc.execute(code)
        out, err, images, fired = [], None, 0, False
        t = time.time()
        while True:
            left = timeout - (time.time() - t)
            assert left > 0, f"cell timed out after {timeout} s: {code[:80]}\n{''.join(out)[-2000:]}"
            try:
                msg = self.kc.get_iopub_msg(timeout=min(left, 5))
            except Exception:  # queue.Empty: no message for 5 s
                if when and not fired and when("".join(out)):
                    fired = True
                    then()
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, c = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(c["text"])
            elif kind in ("execute_result", "display_data"):
                out.append(c["data"].get("text/plain", ""))
                images += "image/png" in c["data"]
            elif kind == "error":
                err = f"{c['ename']}: {c['evalue']}\n" + "\n".join(c.get("traceback", []))
            elif kind == "status" and c["execution_state"] == "idle":
                break
            if when and not fired and when("".join(out)):
                fired = True
                then()
        return Cell("".join(out), err, time.time() - t, images)

    def restart(self):
        self.km.restart_kernel(now=True)
        self.kc.wait_for_ready(timeout=120)

    def shutdown(self):
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)
