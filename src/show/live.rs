//! What the notebook channel ([`crate::notebook`]) shows for fastdet's values: figures as PNG,
//! a fit's report as one HTML block, and the live output of a running fit or lr_find (a
//! progress bar, the epoch table so far and the curve, redrawn in place).

use crate::draw::Figure;
use crate::learner::progress::{Bar, LiveView};
use crate::learner::{FitReport, LrFind};
use crate::metrics::ap::ApTable;
use crate::notebook::{Output, Show};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Show for Figure {
    /// The figure as a PNG (`display(&fig)`), or the error that kept it from being drawn.
    fn output(&self) -> Output {
        match self.to_png() {
            Ok(png) => Output::png(&png),
            Err(e) => Output::text(e.to_string()),
        }
    }
}

impl Show for FitReport {
    /// [`FitReport::to_html`], with the summary and table as text.
    fn output(&self) -> Output {
        Output::html(self.to_html()).with("text/plain", format!("{}\n{}", self.summary(), self.table()))
    }
}

impl Show for LrFind {
    /// [`LrFind::plot`] as a PNG, with the suggested rates as text.
    fn output(&self) -> Output {
        let text = match self.suggestion() {
            Some(s) => format!(
                "lr_find: suggested learning rates {:.2e} (valley), {:.2e} (steepest descent)",
                s.valley, s.steep
            ),
            None => format!("lr_find: {} learning rates", self.lrs.len()),
        };
        match self.plot() {
            Ok(f) => f.output().with("text/plain", text),
            Err(e) => Output::text(format!("{text}\n{e}")),
        }
    }
}

impl Show for ApTable {
    fn output(&self) -> Output {
        Output::html(self.to_html())
    }
}

/// The progress bar as HTML: a `<progress>` element and its line of numbers.
pub fn bar_html(bar: &Bar) -> String {
    format!(
        "<div><progress value=\"{}\" max=\"{}\" style=\"width:320px;vertical-align:middle\"></progress> \
         <span style=\"font-family:monospace\">{}</span></div>",
        bar.done,
        bar.total.max(1),
        esc(&bar.line())
    )
}

impl Show for LiveView {
    /// A running fit: bar, epoch table and curves (training loss with the validation loss per
    /// epoch, learning rate, each metric per epoch); a running lr_find: bar and loss against learning rate. The
    /// `text/plain` version holds the bar's line and the table.
    fn output(&self) -> Output {
        match self {
            LiveView::Fit { bar, report } => {
                let mut h = bar_html(bar);
                h += &format!("<pre>{}</pre>", esc(&report.table()));
                if !report.losses.is_empty() {
                    h += &report
                        .plot()
                        .map(|f| f.to_html_img("loss, learning rate and metrics"))
                        .unwrap_or_else(|e| esc(&e.to_string()));
                }
                Output::html(h).with("text/plain", format!("{}\n{}", bar.line(), report.table()))
            }
            LiveView::LrFind { bar, lrs, losses } => {
                let mut h = bar_html(bar);
                if !losses.is_empty() {
                    let so_far = LrFind { lrs: lrs.clone(), losses: losses.clone(), ..Default::default() };
                    h += &so_far
                        .plot()
                        .map(|f| f.to_html_img("loss against learning rate"))
                        .unwrap_or_else(|e| esc(&e.to_string()));
                }
                Output::html(h).with("text/plain", bar.line())
            }
        }
    }
}

/// What a cell's value shows when its live output above already shows it: one grey line.
pub fn pointer_line(summary: &str, what: &str) -> String {
    format!(
        "<span style=\"color:#888\">{} (the {what} is the output above; <code>display(&amp;x)</code> shows it again)</span>",
        esc(summary)
    )
}
