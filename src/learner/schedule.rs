//! fastai 0.7's `fit` options and learning-rate schedules: [`Lrs`] (one rate or one per layer
//! group), [`FitOpts`] (`cycle_len`, `cycle_mult`, `use_clr`) with their one check, and
//! [`Schedule`], the multiplier of each iteration (SGDR cosine annealing, triangular CLR).

use crate::error::{num, Error, Result};
use crate::model::N_GROUPS;

/// Learning rates: one for every group, or one per layer group (`[lr/100, lr/10, lr]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lrs(pub Vec<f64>);

impl From<f64> for Lrs {
    fn from(lr: f64) -> Self {
        Lrs(vec![lr; N_GROUPS])
    }
}
impl From<Vec<f64>> for Lrs {
    fn from(v: Vec<f64>) -> Self {
        Lrs(v)
    }
}
impl<const N: usize> From<[f64; N]> for Lrs {
    fn from(v: [f64; N]) -> Self {
        Lrs(v.to_vec())
    }
}

/// Whether `lr` can be a learning rate: a number from 0 to `f32::MAX` (the optimiser's
/// precision); else what is wrong with it. The one check of `fit` and of `fastdet train`'s
/// configs.
pub(crate) fn check_lr(lr: f64) -> std::result::Result<(), String> {
    if lr.is_finite() && (0.0..=f32::MAX as f64).contains(&lr) {
        Ok(())
    } else {
        Err(format!("learning rate {} is not a number from 0 to {:e} (f32's largest)", num(lr), f32::MAX))
    }
}

impl Lrs {
    pub(crate) fn per_group(&self) -> Result<Vec<f64>> {
        for &lr in &self.0 {
            check_lr(lr).map_err(Error::Invalid)?;
        }
        match self.0.len() {
            1 => Ok(vec![self.0[0]; N_GROUPS]),
            N_GROUPS => Ok(self.0.clone()),
            n => Err(Error::Invalid(format!("{n} learning rates for {N_GROUPS} layer groups: give 1 or {N_GROUPS}"))),
        }
    }

    /// Every rate divided by `d` (the lesson's `lrs/5`).
    pub fn div(&self, d: f64) -> Lrs {
        Lrs(self.0.iter().map(|l| l / d).collect())
    }
}

/// The options of `fit`: fastai 0.7's schedule keywords, and beyond fastai, keeping the best
/// epoch and stopping early ([`super::best`]).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct FitOpts {
    /// Epochs per cycle; `None` = constant learning rate, one epoch per cycle.
    pub cycle_len: Option<usize>,
    /// Growth of the cycle length for SGDR (fastai's default 1).
    pub cycle_mult: Option<usize>,
    /// `(div, cut)` for the triangular CLR schedule.
    pub use_clr: Option<(f64, usize)>,
    /// Keep the weights of the best epoch by this column of the epoch table (`val_loss`,
    /// `trn_loss` or a metric's name such as `map`; lower or higher is better as the column
    /// says) in `models_dir/best/` ([`super::best`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_best: Option<String>,
    /// Stop after `patience` epochs without improvement of the `keep_best` column (`val_loss`
    /// without one), not before `min_epochs` epochs of this fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<EarlyStop>,
}

/// When a fit stops early ([`FitOpts::early_stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStop {
    /// Epochs without improvement after which the fit stops (at least 1).
    pub patience: usize,
    /// The fit trains at least this many epochs whatever the column does (0: no minimum).
    #[serde(default)]
    pub min_epochs: usize,
}

impl FitOpts {
    /// `cycle_len=n`
    pub fn cycle_len(n: usize) -> Self {
        Self { cycle_len: Some(n), ..Default::default() }
    }

    /// `cycle_len=n, use_clr=(div, cut)`
    pub fn clr(cycle_len: usize, div: f64, cut: usize) -> Self {
        Self { cycle_len: Some(cycle_len), use_clr: Some((div, cut)), ..Default::default() }
    }

    /// The same options with `cycle_len` raised where it must be, so that a triangular cycle
    /// covers its `cut` at `n_batches` batches an epoch (the loader's `len()`): quick mode's
    /// short cycles on a dataset smaller than the bundled sample (16 training images make 2
    /// batches of 8, and `clr(1, 32., 5)`'s 2 iterations cannot hold a cut of 5). Nothing changes
    /// for SGDR, a constant rate, or a cycle already long enough.
    pub fn covering_cut(mut self, n_batches: usize) -> Self {
        if let (Some((_, cut)), Some(cl)) = (self.use_clr, self.cycle_len) {
            if n_batches > 0 && cl * n_batches < cut {
                self.cycle_len = Some(cut.div_ceil(n_batches));
            }
        }
        self
    }

    /// Keep the best epoch by `column` in `models_dir/best/` ([`FitOpts::keep_best`]):
    /// `FitOpts::clr(4, 20., 8).keep_best("map")`.
    pub fn keep_best(mut self, column: &str) -> Self {
        self.keep_best = Some(column.to_string());
        self
    }

    /// Stop after `patience` epochs without improvement, not before `min_epochs` epochs
    /// ([`FitOpts::early_stop`]).
    pub fn early_stop(mut self, patience: usize, min_epochs: usize) -> Self {
        self.early_stop = Some(EarlyStop { patience, min_epochs });
        self
    }

    /// The column that keeping the best epoch and early stopping watch, if either is on.
    pub fn monitored(&self) -> Option<&str> {
        match (&self.keep_best, &self.early_stop) {
            (Some(c), _) => Some(c),
            (None, Some(_)) => Some("val_loss"),
            (None, None) => None,
        }
    }

    /// `n_cycle` epochs with these options: the error names the option (`cycle_len`,
    /// `cycle_mult`, `use_clr`) and says what is wrong. With `n_batches` (batches per epoch) the
    /// triangular cycle must be at least `cut` iterations long, else fastai's schedule divides by
    /// zero. The one check of `fit` and of `fastdet train`'s stages.
    pub fn validate(
        &self,
        n_cycle: usize,
        n_batches: Option<usize>,
    ) -> std::result::Result<(), (&'static str, String)> {
        if n_cycle == 0 {
            return Err(("n_cycle", "must be at least 1".into()));
        }
        if self.keep_best.as_ref().is_some_and(|c| c.trim().is_empty()) {
            return Err(("keep_best", "names no column (val_loss, trn_loss or a metric such as map)".into()));
        }
        if let Some(es) = self.early_stop {
            if es.patience == 0 {
                return Err(("early_stop", "patience must be at least 1 epoch".into()));
            }
        }
        if self.cycle_len == Some(0) {
            return Err(("cycle_len", "must be at least 1".into()));
        }
        if self.cycle_mult == Some(0) {
            return Err(("cycle_mult", "must be at least 1".into()));
        }
        if self.cycle_mult.is_some() && self.cycle_len.is_none() {
            return Err(("cycle_mult", "needs cycle_len (as in fastai)".into()));
        }
        if let Some((div, cut)) = self.use_clr {
            let Some(cl) = self.cycle_len else {
                return Err(("use_clr", "needs cycle_len (the length of the triangular cycle)".into()));
            };
            if self.cycle_mult.is_some() {
                return Err(("cycle_mult", "has no effect with use_clr (fastai ignores it): leave one out".into()));
            }
            if !(div.is_finite() && div >= 1.0) {
                return Err(("use_clr", format!("div {} must be a number >= 1", num(div))));
            }
            if cut == 0 {
                return Err(("use_clr", "cut must be at least 1".into()));
            }
            if let Some(nb) = n_batches.filter(|&nb| nb * cl < cut) {
                return Err((
                    "use_clr",
                    format!(
                        "cut {cut} is more than the cycle's {} iterations ({nb} batches x cycle_len {cl}): the triangular schedule would divide by zero; use a smaller cut, a larger cycle_len or a smaller bs",
                        nb * cl
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Epochs that `fit(lrs, n_cycle, self)` trains.
    pub fn epochs(&self, n_cycle: usize) -> usize {
        match (self.cycle_len, self.use_clr) {
            (None, _) => n_cycle,
            (Some(cl), Some(_)) => n_cycle * cl,
            (Some(cl), None) => {
                let m = self.cycle_mult.unwrap_or(1);
                (0..n_cycle).map(|j| cl * m.pow(j as u32)).sum()
            }
        }
    }
}

/// The learning-rate multiplier of each iteration, exactly as fastai 0.7's `LR_Updater`s.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Schedule {
    Constant,
    /// `CosAnneal(nb, cycle_mult)`: `1/100` for the first `nb/20` iterations of the whole fit,
    /// then `(cos(pi * i / nb) + 1) / 2` within each cycle.
    CosAnneal {
        nb: f64,
        cycle_mult: f64,
        cycle_iter: usize,
        iteration: usize,
    },
    /// `CircularLR(nb, div, cut_div)`: up from `1/div` to 1 over `nb / cut_div` iterations (at
    /// least one), then down to `1/div`.
    Circular {
        nb: usize,
        div: f64,
        cut_div: usize,
        cycle_iter: usize,
    },
}

impl Schedule {
    pub fn cos_anneal(nb: usize, cycle_mult: usize) -> Self {
        Schedule::CosAnneal { nb: nb as f64, cycle_mult: cycle_mult as f64, cycle_iter: 0, iteration: 0 }
    }

    pub fn circular(nb: usize, div: f64, cut_div: usize) -> Self {
        Schedule::Circular { nb, div, cut_div, cycle_iter: 0 }
    }

    /// The multiplier for the next iteration (`calc_lr(1.0)`), advancing the schedule.
    pub fn next_mult(&mut self) -> f64 {
        match self {
            Schedule::Constant => 1.0,
            Schedule::CosAnneal { nb, cycle_mult, cycle_iter, iteration } => {
                let it = *iteration;
                *iteration += 1;
                if (it as f64) < *nb / 20.0 {
                    *cycle_iter += 1;
                    return 0.01;
                }
                let cos_out = (std::f64::consts::PI * *cycle_iter as f64 / *nb).cos() + 1.0;
                *cycle_iter += 1;
                if *cycle_iter as f64 == *nb {
                    *cycle_iter = 0;
                    *nb *= *cycle_mult;
                }
                cos_out / 2.0
            }
            Schedule::Circular { nb, div, cut_div, cycle_iter } => {
                // fastai divides by zero when a cycle has fewer iterations than `cut_div`; the
                // peak then comes after the first iteration instead.
                let cut_pt = (*nb / *cut_div).max(1);
                let i = *cycle_iter;
                let pct = if i > cut_pt {
                    1.0 - (i - cut_pt) as f64 / (*nb - cut_pt) as f64
                } else {
                    i as f64 / cut_pt as f64
                };
                *cycle_iter += 1;
                if *cycle_iter == *nb {
                    *cycle_iter = 0;
                }
                (1.0 + pct * (*div - 1.0)) / *div
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rates_beyond_f32_are_refused_in_few_digits() {
        assert!(Lrs::from(1e-3).per_group().is_ok());
        let e = Lrs::from(1e300).per_group().unwrap_err().to_string();
        assert_eq!(e, "learning rate 1e300 is not a number from 0 to 3.4028235e38 (f32's largest)");
        let e = Lrs::from(vec![1e-3, -2.0, 1e-2]).per_group().unwrap_err().to_string();
        assert!(e.starts_with("learning rate -2 is not"), "{e}");
        let (field, e) = FitOpts::clr(1, -1e300, 5).validate(1, None).unwrap_err();
        assert_eq!((field, e.as_str()), ("use_clr", "div -1e300 must be a number >= 1"));
    }

    #[test]
    fn a_triangular_cycle_is_lengthened_to_cover_its_cut_and_nothing_else_changes() {
        // 2 batches an epoch: a cut of 5 needs 3 epochs, of 10 needs 5; refused before, valid after.
        for (cut, epochs) in [(5, 3), (10, 5), (2, 1)] {
            let o = FitOpts::clr(1, 32., cut);
            assert_eq!(o.validate(1, Some(2)).is_ok(), cut <= 2, "cut {cut}");
            let long = o.covering_cut(2);
            assert_eq!(long.cycle_len, Some(epochs), "cut {cut}");
            assert_eq!(long.use_clr, Some((32., cut)));
            assert!(long.validate(1, Some(2)).is_ok(), "cut {cut}");
        }
        // Long enough already (the sample's 6 batches), SGDR, a constant rate: unchanged.
        assert_eq!(FitOpts::clr(2, 32., 10).covering_cut(6), FitOpts::clr(2, 32., 10));
        assert_eq!(FitOpts::cycle_len(1).covering_cut(1), FitOpts::cycle_len(1));
        assert_eq!(FitOpts::default().covering_cut(0), FitOpts::default());
    }
}
