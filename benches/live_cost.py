"""`make bench-live`: what the live output of a fit costs, measured in one kernel of "Rust (fastdet)"
(through the launcher's proxy, as in `make lab`): the same fit of the bundled sample run with the
live output (bar, table and curve redrawn every 2 s) and without it
(`fastdet::notebook::set_channel(Some(Channel::Evcxr))`: printed progress lines, the report when
the cell ends, as with plain evcxr), alternating, ROUNDS times each, each timed with the drawing
of its report. The whole fits differ by less than runs of one mode do, so the verdict uses the
time `fit` itself spent drawing and sending its live output (`FitReport::live_draw_secs`).
Prints a table and a verdict against the goal: the live output costs at most 2% of the fit's time
on the CPU. Never asserted (tests/test_kernel.py tests the behaviour).

    python benches/live_cost.py [--rounds 5] [--epochs 6] [--sz 224]
"""
import argparse
import os
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from kernel_session import Kernel  # noqa: E402

GOAL = 0.02


def cpu_secs(pid):
    """User + system CPU seconds of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--sz", type=int, default=224)
    args = ap.parse_args()
    k = Kernel()
    times = {"live": [], "lines": []}
    drawing = []  # seconds of each live fit spent drawing and sending its output
    updates = []
    try:
        k.run(':dep fastdet = { path = ".." }', timeout=1800).ok()
        k.run("use fastdet::prelude::*;").ok()
        # Notebook 04's quick-mode data (sample, 128 px, batches of 8) and its ResNet34 learner.
        k.run(f"""let trn = Pascal::open(fastdet::data::sample_root())?.json("train")?;
let md = ImageData::from_dataset(trn, Task::SingleObject.target(), tfms_from_model({args.sz}, lesson_augmentations(), CropType::No, TfmY::Coord)?, DataOpts::new(8, default_device()))?;
let mut learn = Learner::for_task(md, Task::SingleObject, LearnerOpts::new(None, "../target/tmp/bench-live-models"))?;
println!("{{}} training batches of 8 at {args.sz} px", learn.data.trn_dl.len());""").ok()
        k.run("learn.fit(1e-4, 1, FitOpts::default())?;").ok()  # warm-up: caches, allocator
        # Timed: the fit and the drawing of its report. Live, the report is drawn inside `fit`
        # (the live output becomes it); otherwise evcxr draws it when the cell ends, which the
        # cell does here inside the timed window so that both figures hold the same work.
        fit = f"""let t = std::time::Instant::now();
let r = learn.fit(1e-4, {args.epochs}, FitOpts::default())?;
if !r.shown_live {{ let _ = fastdet::notebook::Show::output(&r); }}
println!("fit took {{:.3}} s, drawing {{:.3}} s", t.elapsed().as_secs_f64(), r.live_draw_secs);"""
        launcher = k.km.provisioner.process.pid  # the proxy: its CPU time is the live output's too
        proxy = {"live": [], "lines": []}
        for r in range(args.rounds):
            # live first in odd rounds, last in even ones: no mode always runs first
            for mode in ("live", "lines") if r % 2 == 0 else ("lines", "live"):
                chosen = "None" if mode == "live" else "Some(fastdet::notebook::Channel::Evcxr)"
                k.run(f"fastdet::notebook::set_channel({chosen});").ok()
                before = cpu_secs(launcher)
                c = k.run(fit).ok()
                proxy[mode].append(cpu_secs(launcher) - before)
                secs = float(re.search(r"fit took ([\d.]+) s", c.text).group(1))
                times[mode].append(secs)
                if mode == "live":
                    updates.append(len(c.updates()))
                    drawing.append(float(re.search(r"drawing ([\d.]+) s", c.text).group(1)))
                print(f"  round {r + 1}, {mode}: {secs:.2f} s" + (f" ({updates[-1]} redraws)" if mode == "live" else ""), flush=True)
    finally:
        k.shutdown()
    live, lines = statistics.median(times["live"]), statistics.median(times["lines"])
    cost = (live - lines) / lines
    print(f"\nA fit of the sample and the drawing of its report, {args.epochs} epochs at {args.sz} px, batches of 8, ResNet34,"
          f" in one kernel of the launcher, {os.cpu_count()} CPU cores (median of {args.rounds}):\n")
    print(f"| output | fit (s) | runs (s) |")
    print(f"|---|---|---|")
    print(f"| live (redrawn every 2 s, {statistics.median(updates):.0f} redraws) | {live:.2f} | {', '.join(f'{t:.2f}' for t in times['live'])} |")
    print(f"| printed lines, report at the end | {lines:.2f} | {', '.join(f'{t:.2f}' for t in times['lines'])} |")
    print(f"| difference | {100 * cost:+.1f}% | |")
    share = statistics.median(d / t for d, t in zip(drawing, times["live"]))
    print(f"| of which drawing and sending the live output (timed inside `fit`) | {statistics.median(drawing):.3f} ({100 * share:.1f}%) | {', '.join(f'{d:.3f}' for d in drawing)} |")
    print(f"| the launcher's CPU time in the live fit (the proxy: read, sign, send) | {statistics.median(proxy['live']):.2f} | {', '.join(f'{d:.2f}' for d in proxy['live'])} |")
    print(f"| the launcher's CPU time in the other fit | {statistics.median(proxy['lines']):.2f} | {', '.join(f'{d:.2f}' for d in proxy['lines'])} |")
    met = share <= GOAL
    spread = max((max(v) - min(v)) / statistics.median(v) for v in times.values())
    print(f"\nverdict: drawing the live output takes {100 * share:.1f}% of the fit's time: goal (at most {100 * GOAL:.0f}%) "
          + ("met" if met else "NOT met") + f"; the whole fits differ by {100 * cost:+.1f}%, "
          + ("within" if abs(cost) <= spread else "beyond") + f" the noise of runs of one mode (up to {100 * spread:.1f}% apart)")


if __name__ == "__main__":
    main()
