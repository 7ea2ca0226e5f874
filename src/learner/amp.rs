//! Mixed precision: a gradient scaler, PyTorch's `torch.amp.GradScaler`, written out.
//!
//! tch has `autocast` and the `_amp_update_scale_` op but no scaler. The one PyTorch documents
//! ("Gradient scaling", `torch/amp/grad_scaler.py`) is small:
//!
//! 1. the loss is multiplied by `scale` before `backward`, so fp16 gradients do not underflow;
//! 2. `unscale`: every gradient is multiplied by `1/scale`, and `found_inf` records whether any
//!    of them holds an inf or NaN (`_amp_foreach_non_finite_check_and_unscale_`);
//! 3. `step`: the optimiser steps only when nothing was found, else the step is skipped;
//! 4. `update` (`_amp_update_scale_`): after a skipped step the scale is multiplied by
//!    `backoff_factor` (0.5) and the count of good steps reset; after `growth_interval` (2000)
//!    good steps in a row it is multiplied by `growth_factor` (2).
//!
//! `tests/it/amp.rs` checks the scale, the skipped steps and the weights against
//! `torch.amp.GradScaler` on a fixed sequence of gradients with infs and NaNs.

use crate::error::Result;
use tch::{nn, Device, Kind, Tensor};

/// `torch.amp.GradScaler`'s settings, with its defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalerOpts {
    pub init_scale: f64,
    pub growth_factor: f64,
    pub backoff_factor: f64,
    pub growth_interval: i64,
}

impl Default for ScalerOpts {
    /// PyTorch's: 2^16, x2 growth every 2000 good steps, x0.5 after a skipped one.
    fn default() -> Self {
        Self { init_scale: 65536.0, growth_factor: 2.0, backoff_factor: 0.5, growth_interval: 2000 }
    }
}

/// The gradient scaler. Its state (scale, good steps in a row) stays on the device and is read
/// back only when asked for.
#[derive(Debug)]
pub struct GradScaler {
    pub opts: ScalerOpts,
    scale: Tensor,
    growth_tracker: Tensor,
    /// Steps skipped because a gradient was not finite.
    pub skipped: usize,
    /// Steps taken.
    pub steps: usize,
}

impl GradScaler {
    pub fn new(opts: ScalerOpts, device: Device) -> Self {
        Self {
            opts,
            scale: Tensor::full([1], opts.init_scale, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([1], (Kind::Int, device)),
            skipped: 0,
            steps: 0,
        }
    }

    /// The current scale (a host read).
    pub fn scale(&self) -> f64 {
        self.scale.double_value(&[0])
    }

    /// `loss * scale`, the tensor to call `backward` on.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale.to_device(loss.device()).to_kind(loss.kind())
    }

    /// Unscale the gradients of `params` in place; returns `found_inf` (1 when any gradient
    /// held an inf or NaN, else 0), on the device. Parameters without a gradient are skipped.
    pub fn unscale(&self, params: &[Tensor]) -> Tensor {
        let inv_scale = self.scale.reciprocal().to_kind(Kind::Float);
        let mut found_inf = Tensor::zeros([1], (Kind::Float, self.scale.device()));
        tch::no_grad(|| {
            for p in params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let bad = g.isfinite().all().logical_not().to_kind(Kind::Float).reshape([1]);
                found_inf = found_inf.maximum(&bad.to_device(found_inf.device()));
                g *= inv_scale.to_device(g.device()).to_kind(g.kind());
            }
        });
        found_inf
    }

    /// PyTorch's `scaler.step(opt); scaler.update()` after `backward` on
    /// [`GradScaler::scale_loss`]: unscale, step unless a gradient is not finite, update the
    /// scale. Returns whether the step was taken (one host read per step, as PyTorch's `step`).
    pub fn step(&mut self, opt: &mut nn::Optimizer, params: &[Tensor]) -> Result<bool> {
        let found_inf = self.unscale(params);
        let ok = found_inf.double_value(&[0]) == 0.0;
        if ok {
            opt.step();
            self.steps += 1;
        } else {
            self.skipped += 1;
        }
        self.update(&found_inf);
        Ok(ok)
    }

    /// `_amp_update_scale_`: back off after a non-finite gradient, grow after
    /// `growth_interval` finite ones in a row.
    pub fn update(&mut self, found_inf: &Tensor) {
        let o = self.opts;
        let found = found_inf.to_device(self.scale.device()).to_kind(Kind::Float);
        let _ = self.scale.internal_amp_update_scale_(
            &self.growth_tracker,
            &found,
            o.growth_factor,
            o.backoff_factor,
            o.growth_interval,
        );
    }
}
