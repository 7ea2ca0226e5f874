//! Progress of a fit or an lr_find while it runs:
//! - in fastdet's kernel ([`crate::notebook`]'s live channel): one output that updates in place
//!   about every [`LIVE_EVERY`], a [`LiveView`] (a progress bar, the epoch table so far and the
//!   curve; the display layer draws it), which becomes the final report when the run ends;
//! - on a terminal: an `indicatif` bar;
//! - elsewhere (plain evcxr, where printed lines stream live but pictures only show when the
//!   cell ends; a log): a line every [`LINE_EVERY`] with the batch, the smoothed loss, images per
//!   second and the time left.

use super::record::{fmt_secs, FitReport};
use crate::notebook::{self, Live, Show};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a notebook without the live channel gets a progress line.
pub const LINE_EVERY: Duration = Duration::from_secs(3);
/// How often the live output of a fit or an lr_find is redrawn.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// The numbers of a progress bar.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bar {
    /// What runs: `epoch 2/9`, `lr_find`.
    pub label: String,
    pub done: usize,
    pub total: usize,
    pub images_per_s: f64,
    pub elapsed: f64,
    pub left: f64,
}

impl Bar {
    /// `epoch 2/9, 187/612 batches: 28.3 img/s, 3:30 elapsed, 7:57 left`
    pub fn line(&self) -> String {
        format!(
            "{}, {}/{} batches: {:.1} img/s, {} elapsed, {} left",
            self.label,
            self.done,
            self.total,
            self.images_per_s,
            fmt_secs(self.elapsed),
            if self.left.is_finite() { fmt_secs(self.left) } else { "?".into() }
        )
    }
}

/// What the live output of a running fit or lr_find shows (drawn by `show::live`).
#[derive(Debug, Clone)]
pub enum LiveView {
    /// A fit: the bar, and the report so far (epoch table, losses, learning rates).
    Fit { bar: Bar, report: FitReport },
    /// An lr_find: the bar, and loss against learning rate so far.
    LrFind { bar: Bar, lrs: Vec<f64>, losses: Vec<f64> },
}

pub(crate) struct BatchProgress {
    bar: Option<indicatif::ProgressBar>,
    /// The output that updates in place (fastdet's kernel), and when it was last redrawn.
    live: Option<(Live, Instant)>,
    quiet: bool,
    start: Instant,
    last: Instant,
    label: String,
    /// Batches of the whole run (every epoch) and done so far.
    total: usize,
    done: usize,
    images: usize,
    /// Time spent drawing and sending the live output (on the training thread).
    drawing: Duration,
}

impl BatchProgress {
    /// `total` batches in all; `quiet` prints nothing (a fit in the background).
    /// `first`: what the live output shows before the first batch (the caller's empty view);
    /// without the live channel it is not drawn.
    pub(crate) fn new(total: usize, label: &str, quiet: bool, first: impl FnOnce(Bar) -> LiveView) -> Self {
        let now = Instant::now();
        let live = (!quiet && notebook::is_live()).then(|| {
            let bar = Bar { label: label.to_string(), total, ..Default::default() };
            (notebook::display_live(&first(bar)), now)
        });
        let bar = (!quiet && live.is_none() && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}<{eta} {prefix}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label.to_string());
            b
        });
        Self {
            bar,
            live,
            quiet,
            start: now,
            last: now,
            label: label.to_string(),
            total,
            done: 0,
            images: 0,
            drawing: Duration::ZERO,
        }
    }

    /// Whether the live output is there and due for a redraw ([`BatchProgress::show`]).
    pub(crate) fn live_due(&self) -> bool {
        self.live.as_ref().is_some_and(|(_, t)| t.elapsed() >= LIVE_EVERY)
    }

    /// Whether there is a live output.
    pub(crate) fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// The bar's numbers now.
    pub(crate) fn bar_now(&self) -> Bar {
        let elapsed = self.start.elapsed().as_secs_f64();
        let per_batch = elapsed / self.done.max(1) as f64;
        Bar {
            label: self.label.clone(),
            done: self.done,
            total: self.total,
            images_per_s: self.images as f64 / elapsed.max(1e-9),
            elapsed,
            left: if self.done == 0 { f64::NAN } else { per_batch * self.total.saturating_sub(self.done) as f64 },
        }
    }

    /// Redraw the live output (if any) with `view`.
    pub(crate) fn show(&mut self, view: &(impl Show + ?Sized)) {
        if let Some((live, t)) = &mut self.live {
            let t0 = Instant::now();
            live.update(view);
            *t = Instant::now();
            self.drawing += *t - t0;
        }
    }

    pub(crate) fn set_label(&mut self, label: String) {
        if let Some(b) = &self.bar {
            b.set_message(label.clone());
        }
        self.label = label;
    }

    /// One more batch of `images` images; `loss` is the smoothed loss so far.
    pub(crate) fn batch(&mut self, images: usize, loss: f64) {
        self.done += 1;
        self.images += images;
        let elapsed = self.start.elapsed().as_secs_f64();
        let per_batch = elapsed / self.done as f64;
        let left = per_batch * self.total.saturating_sub(self.done) as f64;
        let ips = self.images as f64 / elapsed.max(1e-9);
        match &self.bar {
            Some(b) => {
                b.set_position(self.done as u64);
                b.set_prefix(format!("loss {loss:.4}, {ips:.1} img/s"));
            }
            None if !self.quiet
                && self.live.is_none()
                && self.last.elapsed() >= LINE_EVERY
                && self.done < self.total =>
            {
                println!(
                    "  {}, {}/{} batches: loss {loss:.4}, {ips:.1} img/s, {} elapsed, {} left",
                    self.label,
                    self.done,
                    self.total,
                    fmt_secs(elapsed),
                    fmt_secs(left)
                );
                self.last = Instant::now();
            }
            None => {}
        }
    }

    /// The end of the run: the live output becomes `last` (the report), at once.
    pub(crate) fn finish(&mut self, last: &(impl Show + ?Sized)) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some((live, _)) = self.live.take() {
            let t0 = Instant::now();
            live.update(last);
            live.flush();
            self.drawing += t0.elapsed();
        }
    }

    /// Seconds spent drawing and sending the live output so far (0 without one).
    pub(crate) fn drawing_secs(&self) -> f64 {
        self.drawing.as_secs_f64()
    }
}
