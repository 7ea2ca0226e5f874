//! Progress of a fit or an lr_find while it runs: an `indicatif` bar on a terminal; in a
//! notebook (where printed lines stream live but pictures only show when the cell ends) a line
//! every few seconds with the batch, the smoothed loss, images per second and the time left.

use super::record::fmt_secs;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a notebook gets a progress line.
pub const LINE_EVERY: Duration = Duration::from_secs(3);

pub(crate) struct BatchProgress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    start: Instant,
    last: Instant,
    label: String,
    /// Batches of the whole run (every epoch) and done so far.
    total: usize,
    done: usize,
    images: usize,
}

impl BatchProgress {
    /// `total` batches in all; `quiet` prints nothing (a fit in the background).
    pub(crate) fn new(total: usize, label: &str, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {elapsed}<{eta} {prefix}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(label.to_string());
            b
        });
        let now = Instant::now();
        Self { bar, quiet, start: now, last: now, label: label.to_string(), total, done: 0, images: 0 }
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
            None if !self.quiet && self.last.elapsed() >= LINE_EVERY && self.done < self.total => {
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

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
