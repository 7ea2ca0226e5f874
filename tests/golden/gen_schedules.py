"""Golden learning-rate multipliers of fastai 0.7's schedulers, for tests/it/golden_torch.rs.

The classes below are copied verbatim from fastai 0.7's fastai/sgdr.py (github.com/fastai/fastai,
commit 0313ebf264639de948511758a9709dc9872c887a, the 0.7 line used by the 2018 course), except:
- LossRecorder keeps only what the schedulers use (iteration counting and recording the lr of
  each batch); plotting, saving and metrics are left out;
- `from .imports import *` is replaced by the two imports they need, and `@abstractmethod` by
  plain methods (the original's `abc` import adds nothing at run time here).
The calc_lr / on_train_begin / on_batch_end logic is unchanged.

The driver reproduces fastai 0.7's fit loop (fastai/model.py `fit`): `on_train_begin()` once,
then for every batch the optimiser steps with the lr in effect, then `on_batch_end(loss)` —
so batch i runs with `calc_lr` evaluated at iteration i (iteration 0 from on_train_begin).
It records, for every batch, the multiplier in effect (init_lrs = [1.0]), or for LR_Finder the
lr itself (start 1e-5, end 10, as `learn.lr_find()`), with a constant loss so it never stops.

Run with the project's venv python:  python tests/golden/gen_schedules.py
It writes tests/golden/schedules.json next to this file.
"""
import json
import math
import os

import numpy as np


# ---- fastai/sgdr.py (0.7), verbatim except as noted above -------------------------------------
class Callback:
    def on_train_begin(self): pass
    def on_batch_begin(self): pass
    def on_phase_begin(self): pass
    def on_epoch_end(self, metrics): pass
    def on_phase_end(self): pass
    def on_batch_end(self, metrics): pass
    def on_train_end(self): pass


class LossRecorder(Callback):
    def __init__(self, layer_opt, save_path='', record_mom=False, metrics=[]):
        super().__init__()
        self.layer_opt=layer_opt
        self.init_lrs=np.array(layer_opt.lrs)
        self.save_path, self.record_mom, self.metrics = save_path, record_mom, metrics

    def on_train_begin(self):
        self.losses,self.lrs,self.iterations = [],[],[]
        self.val_losses, self.rec_metrics = [], []
        if self.record_mom:
            self.momentums = []
        self.iteration = 0
        self.epoch = 0

    def on_batch_end(self, loss):
        self.iteration += 1
        self.lrs.append(self.layer_opt.lr)
        self.iterations.append(self.iteration)
        if isinstance(loss, list):
            self.losses.append(loss[0])
            self.save_metrics(loss[1:])
        else: self.losses.append(loss)
        if self.record_mom: self.momentums.append(self.layer_opt.mom)


class LR_Updater(LossRecorder):
    def on_train_begin(self):
        super().on_train_begin()
        self.update_lr()
        if self.record_mom:
            self.update_mom()

    def on_batch_end(self, loss):
        res = super().on_batch_end(loss)
        self.update_lr()
        if self.record_mom:
            self.update_mom()
        return res

    def update_lr(self):
        new_lrs = self.calc_lr(self.init_lrs)
        self.layer_opt.set_lrs(new_lrs)

    def update_mom(self):
        new_mom = self.calc_mom()
        self.layer_opt.set_mom(new_mom)

    def calc_lr(self, init_lrs): raise NotImplementedError

    def calc_mom(self): raise NotImplementedError


class LR_Finder(LR_Updater):
    def __init__(self, layer_opt, nb, end_lr=10, linear=False, metrics = []):
        self.linear, self.stop_dv = linear, True
        ratio = end_lr/layer_opt.lr
        self.lr_mult = (ratio/nb) if linear else ratio**(1/nb)
        super().__init__(layer_opt,metrics=metrics)

    def on_train_begin(self):
        super().on_train_begin()
        self.best=1e9

    def calc_lr(self, init_lrs):
        mult = self.lr_mult*self.iteration if self.linear else self.lr_mult**self.iteration
        return init_lrs * mult

    def on_batch_end(self, metrics):
        loss = metrics[0] if isinstance(metrics,list) else metrics
        if self.stop_dv and (math.isnan(loss) or loss>self.best*4):
            return True
        if (loss<self.best and self.iteration>10): self.best=loss
        return super().on_batch_end(metrics)


class CosAnneal(LR_Updater):
    def __init__(self, layer_opt, nb, on_cycle_end=None, cycle_mult=1):
        self.nb,self.on_cycle_end,self.cycle_mult = nb,on_cycle_end,cycle_mult
        super().__init__(layer_opt)

    def on_train_begin(self):
        self.cycle_iter,self.cycle_count=0,0
        super().on_train_begin()

    def calc_lr(self, init_lrs):
        if self.iteration<self.nb/20:
            self.cycle_iter += 1
            return init_lrs/100.

        cos_out = np.cos(np.pi*(self.cycle_iter)/self.nb) + 1
        self.cycle_iter += 1
        if self.cycle_iter==self.nb:
            self.cycle_iter = 0
            self.nb *= self.cycle_mult
            if self.on_cycle_end: self.on_cycle_end(self, self.cycle_count)
            self.cycle_count += 1
        return init_lrs / 2 * cos_out


class CircularLR(LR_Updater):
    def __init__(self, layer_opt, nb, div=4, cut_div=8, on_cycle_end=None, momentums=None):
        self.nb,self.div,self.cut_div,self.on_cycle_end = nb,div,cut_div,on_cycle_end
        if momentums is not None:
            self.moms = momentums
        super().__init__(layer_opt, record_mom=(momentums is not None))

    def on_train_begin(self):
        self.cycle_iter,self.cycle_count=0,0
        super().on_train_begin()

    def calc_lr(self, init_lrs):
        cut_pt = self.nb//self.cut_div
        if self.cycle_iter>cut_pt:
            pct = 1 - (self.cycle_iter - cut_pt)/(self.nb - cut_pt)
        else: pct = self.cycle_iter/cut_pt
        res = init_lrs * (1 + pct*(self.div-1)) / self.div
        self.cycle_iter += 1
        if self.cycle_iter==self.nb:
            self.cycle_iter = 0
            if self.on_cycle_end: self.on_cycle_end(self, self.cycle_count)
            self.cycle_count += 1
        return res
# ---- end of the copy --------------------------------------------------------------------------


class LayerOptimizer:
    """The part of fastai's LayerOptimizer the schedulers touch (one layer group)."""

    def __init__(self, lr):
        self.lrs = [lr]

    @property
    def lr(self):
        return self.lrs[-1]

    def set_lrs(self, lrs):
        self.lrs = list(np.atleast_1d(lrs))


def run(make, n_iter, lr=1.0):
    """fastai's fit loop: on_train_begin, then per batch (step with layer_opt.lr, on_batch_end)."""
    opt = LayerOptimizer(lr)
    sched = make(opt)
    sched.on_train_begin()
    used = []
    for _ in range(n_iter):
        used.append(float(opt.lr))  # the lr of this batch's optimiser step
        if sched.on_batch_end(1.0):  # constant loss: LR_Finder never stops
            break
    return used


def run_finder(nb, raw_losses, start_lr=1e-5, end_lr=10.0):
    """lr_find as fastai 0.7 runs it: `fit`'s loop (model.py) smooths each batch's raw loss
    (avg_mom 0.98, debiased) and hands it to LR_Finder.on_batch_end, which stops on NaN or on a
    loss over 4x the best. Returns the lr of each batch stepped, the recorded lrs and losses
    (sched.lrs, sched.losses) and how many batches ran."""
    opt = LayerOptimizer(start_lr)
    sched = LR_Finder(opt, nb, end_lr=end_lr)
    sched.on_train_begin()
    avg_mom, avg_loss, batch_num = 0.98, 0., 0
    stepped = []
    for loss in raw_losses[:nb]:
        batch_num += 1
        stepped.append(float(opt.lr))
        avg_loss = avg_loss * avg_mom + loss * (1 - avg_mom)
        debias_loss = avg_loss / (1 - avg_mom ** batch_num)
        if sched.on_batch_end(debias_loss):
            break
    return {"stepped": stepped, "lrs": [float(x) for x in sched.lrs], "losses": [float(x) for x in sched.losses],
            "batches": batch_num}


def finder_cases():
    """Raw loss sequences that exercise the stop rule: a fall then a blow-up, a NaN, a first
    loss over 4x fastai's initial best (1e9), and one that never stops."""
    fall_then_blow = [5.0 * math.exp(-i / 10) + (math.exp((i - 25) / 2) if i > 25 else 0.0) for i in range(60)]
    with_nan = [3.0 - 0.05 * i for i in range(30)]
    with_nan[14] = float("nan")
    huge = [5e9] * 20
    calm = [2.0 + math.sin(i) * 0.1 - 0.01 * i for i in range(25)]
    early_spike = [1.0] * 8 + [100.0] + [1.0] * 11  # before iteration 10 the best is still 1e9
    out = []
    for name, raw in [("fall_then_blow", fall_then_blow), ("nan", with_nan), ("huge", huge), ("calm", calm),
                      ("early_spike", early_spike)]:
        nb = len(raw)
        out.append({"kind": "lr_finder_losses", "name": name, "nb": nb, "start_lr": 1e-5, "end_lr": 10.0,
                    "raw": [None if math.isnan(x) else x for x in raw], **run_finder(nb, raw)})
    return out


def main():
    cases = []
    for nb, div, cut, n_cycle in [(100, 32, 5, 1), (100, 32, 10, 1), (100, 32, 5, 2), (7, 32, 5, 2), (7, 20, 3, 1),
                                  (30, 20, 8, 1), (13, 32, 10, 1), (45, 32, 10, 2)]:
        cases.append({"kind": "circular", "nb": nb, "div": div, "cut_div": cut, "n_iter": nb * n_cycle,
                      "mults": run(lambda o: CircularLR(o, nb, div=div, cut_div=cut), nb * n_cycle)})
    # nb < cut_div: cut_pt = 0 and fastai divides 0 by 0 at the first batch.
    try:
        run(lambda o: CircularLR(o, 7, div=32, cut_div=10), 7)
        err = None
    except ZeroDivisionError as e:
        err = f"ZeroDivisionError: {e}"
    cases.append({"kind": "circular", "nb": 7, "div": 32, "cut_div": 10, "n_iter": 7, "error": err})
    for nb, mult, n_cycle in [(40, 1, 3), (40, 2, 3), (100, 1, 2), (7, 1, 3), (7, 2, 3), (60, 3, 2), (3, 2, 4)]:
        n_iter = sum(nb * mult ** j for j in range(n_cycle))
        cases.append({"kind": "cos_anneal", "nb": nb, "cycle_mult": mult, "n_cycle": n_cycle, "n_iter": n_iter,
                      "mults": run(lambda o: CosAnneal(o, nb, cycle_mult=mult), n_iter)})
    for nb in list(range(1, 31)) + [100]:
        cases.append({"kind": "lr_finder", "nb": nb, "start_lr": 1e-5, "end_lr": 10.0, "n_iter": nb,
                      "lrs": run(lambda o: LR_Finder(o, nb, end_lr=10.0), nb, lr=1e-5)})
    cases += finder_cases()
    doc = {"generator": "tests/golden/gen_schedules.py",
           "source": "fastai 0.7 fastai/sgdr.py @ 0313ebf264639de948511758a9709dc9872c887a",
           "cases": cases}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schedules.json")
    with open(path, "w") as f:
        json.dump(doc, f)
        f.write("\n")
    print(f"wrote {path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
