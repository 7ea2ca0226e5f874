//! Drawing images, boxes and labels (lesson 8's matplotlib helpers, with plotters), and the
//! notebook display protocol. This module knows boxes and images only; pictures of the
//! crate's own types (batches, anchors, predictions, curves) are drawn with it in
//! [`crate::show`].
//!
//! A [`Figure`] is a grid of panels (`rows x cols`) on one RGB canvas; [`Figure::ax`] gives the
//! panel to draw on, like matplotlib's `ax`. Boxes and text positions are given in the pixel
//! coordinates of the image shown in the panel, as the lesson does, and are scaled with it.
//!
//! - [`Ax::show_img`], [`Ax::draw_rect`] (line width 2 with a black outline of width 4),
//!   [`Ax::draw_text`] (bold, top-aligned, black outline of 1 px), [`Ax::show_ground_truth`]
//!   (boxes in 12 `Set3` colours labelled `"i: class 0.87"`);
//! - [`show_img`], [`draw_im`] for one image; [`Figure::for_items`] for a grid of `n` pictures;
//! - in an evcxr notebook a `Figure` shows itself inline as a PNG ([`evcxr_show`], evcxr's
//!   protocol, written once here); [`Figure::save_png`] writes it.
//!
//! A line of width `lw` is centred on the box's outer edge: for a box whose left column is `x`
//! at scale 1, the white line covers columns `x-1..=x` and the outline `x-2..=x+1`. Text uses
//! DejaVu Sans Bold, embedded in the crate, so it renders on machines without fonts.

use crate::boxes::BBox;
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color as _, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Color(pub u8, pub u8, pub u8);

impl Color {
    pub const WHITE: Color = Color(255, 255, 255);
    pub const BLACK: Color = Color(0, 0, 0);
    /// matplotlib's default grid colour (`#b0b0b0`), the lesson's `ax.grid()`.
    pub const GRID: Color = Color(176, 176, 176);

    fn rgb(self) -> RGBColor {
        RGBColor(self.0, self.1, self.2)
    }
}

/// matplotlib's `Set3` colour map: the lesson's 12 box colours (`colr_list`).
pub const SET3: [Color; 12] = [
    Color(0x8d, 0xd3, 0xc7),
    Color(0xff, 0xff, 0xb3),
    Color(0xbe, 0xba, 0xda),
    Color(0xfb, 0x80, 0x72),
    Color(0x80, 0xb1, 0xd3),
    Color(0xfd, 0xb4, 0x62),
    Color(0xb3, 0xde, 0x69),
    Color(0xfc, 0xcd, 0xe5),
    Color(0xd9, 0xd9, 0xd9),
    Color(0xbc, 0x80, 0xbd),
    Color(0xcc, 0xeb, 0xc5),
    Color(0xff, 0xed, 0x6f),
];

const FONT_NAME: &str = "fastdet-sans";
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-Bold.ttf");

fn register_font() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        // Also as "sans-serif", plotters' default family for chart labels.
        [(FONT_NAME, FontStyle::Bold), ("sans-serif", FontStyle::Normal), ("sans-serif", FontStyle::Bold)]
            .into_iter()
            .all(|(name, style)| plotters::style::register_font(name, style, FONT_BYTES).is_ok())
    })
}

/// Where the image of a panel sits on the canvas: canvas = origin + image_px * scale.
#[derive(Debug, Clone, Copy)]
struct Placement {
    x0: f32,
    y0: f32,
    scale: f32,
}

#[derive(Debug, Clone, Copy)]
struct Panel {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    placement: Placement,
}

/// A grid of panels on one canvas. See the module docs.
#[derive(Clone)]
pub struct Figure {
    canvas: RgbImage,
    panels: Vec<Panel>,
    /// The first drawing error, reported by [`Figure::to_png`] and the notebook display.
    error: Option<String>,
}

impl std::fmt::Debug for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Figure({}x{}, {} panels)", self.canvas.width(), self.canvas.height(), self.panels.len())
    }
}

const GAP: u32 = 6;

impl Figure {
    /// A `rows x cols` grid of `cell_w x cell_h` panels on white.
    pub fn grid(rows: u32, cols: u32, cell_w: u32, cell_h: u32) -> Result<Self> {
        if rows == 0 || cols == 0 || cell_w == 0 || cell_h == 0 {
            return Err(Error::Draw(format!(
                "a figure needs at least one row, column and pixel: got {rows}x{cols} panels of {cell_w}x{cell_h}"
            )));
        }
        let (w, h) = (cols * cell_w + (cols + 1) * GAP, rows * cell_h + (rows + 1) * GAP);
        let mut panels = Vec::with_capacity((rows * cols) as usize);
        for r in 0..rows {
            for c in 0..cols {
                let (x, y) = (GAP + c * (cell_w + GAP), GAP + r * (cell_h + GAP));
                let placement = Placement { x0: x as f32, y0: y as f32, scale: 1.0 };
                panels.push(Panel { x, y, w: cell_w, h: cell_h, placement });
            }
        }
        Ok(Self { canvas: RgbImage::from_pixel(w, h, Rgb([255, 255, 255])), panels, error: None })
    }

    /// A grid for `n` square pictures of side `sz`, `cols` wide (fewer when `n` is smaller);
    /// an error when there is nothing to show.
    pub fn for_items(n: usize, cols: u32, sz: u32) -> Result<Self> {
        if n == 0 || cols == 0 {
            return Err(Error::Draw(format!("nothing to show: {n} pictures in {cols} columns")));
        }
        let cols = cols.min(n as u32);
        Self::grid((n as u32).div_ceil(cols), cols, sz.max(1), sz.max(1))
    }

    /// One panel exactly the size of a `width x height` image, no margin (scale 1: drawn
    /// coordinates are image pixels).
    pub fn single(width: u32, height: u32) -> Self {
        let placement = Placement { x0: 0.0, y0: 0.0, scale: 1.0 };
        let panels = vec![Panel { x: 0, y: 0, w: width.max(1), h: height.max(1), placement }];
        Self { canvas: RgbImage::from_pixel(width.max(1), height.max(1), Rgb([255, 255, 255])), panels, error: None }
    }

    /// Add a panel `height` pixels high across the whole figure below everything else (a
    /// legend); returns its index.
    pub fn add_footer(&mut self, height: u32) -> usize {
        let (w, h) = self.canvas.dimensions();
        let mut canvas = RgbImage::from_pixel(w, h + height + GAP, Rgb([255, 255, 255]));
        image::imageops::replace(&mut canvas, &self.canvas, 0, 0);
        self.canvas = canvas;
        let (x, y) = (GAP.min(w), h);
        let placement = Placement { x0: x as f32, y0: y as f32, scale: 1.0 };
        self.panels.push(Panel { x, y, w: w.saturating_sub(2 * GAP).max(1), h: height.max(1), placement });
        self.panels.len() - 1
    }

    /// The panel `i` (row-major), to draw on.
    ///
    /// A panel that does not exist (`i >= rows * cols`) draws nothing and makes the figure an
    /// error ([`Figure::to_png`] and the notebook display say which panel).
    pub fn ax(&mut self, i: usize) -> Ax<'_> {
        if i >= self.panels.len() && self.error.is_none() {
            self.error = Some(format!("panel {i} of a figure with {} panels", self.panels.len()));
        }
        Ax { fig: self, i }
    }

    pub fn num_panels(&self) -> usize {
        self.panels.len()
    }

    /// The canvas as it is now.
    pub fn image(&self) -> &RgbImage {
        &self.canvas
    }

    /// The canvas encoded as PNG.
    pub fn to_png(&self) -> Result<Vec<u8>> {
        if let Some(e) = &self.error {
            return Err(Error::Draw(e.clone()));
        }
        let mut bytes = Vec::new();
        self.canvas
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
            .map_err(|e| Error::Draw(format!("PNG encoding failed: {e}")))?;
        Ok(bytes)
    }

    /// Write the figure as a PNG file.
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_png()?).map_err(|e| Error::io(path, e))
    }

    /// evcxr's display protocol: the figure appears inline as a PNG in a notebook.
    pub fn evcxr_display(&self) {
        evcxr_show(&Display::Png(self.to_png()));
    }

    /// The figure as `<img>` HTML with the PNG inline (or the error that kept it from being
    /// drawn), for HTML outputs that hold pictures.
    pub fn to_html_img(&self, alt: &str) -> String {
        use base64::Engine;
        match self.to_png() {
            Ok(png) => format!(
                "<img alt=\"{alt}\" src=\"data:image/png;base64,{}\">",
                base64::engine::general_purpose::STANDARD.encode(png)
            ),
            Err(e) => format!("<p>{alt}: {e}</p>"),
        }
    }

    /// Run plotters drawing on the canvas, remembering the first error.
    fn plot(&mut self, f: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>) {
        let (w, h) = self.canvas.dimensions();
        let result = {
            let root = BitMapBackend::with_buffer(&mut self.canvas, (w, h)).into_drawing_area();
            f(&root).and_then(|_| root.present().map_err(|e| e.to_string()))
        };
        if let (Err(e), None) = (result, &self.error) {
            self.error = Some(e);
        }
    }

    fn fill(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, color: Color, clip: Panel) {
        // Clip to the panel so a box never spills into its neighbour.
        let (cx0, cy0) = (clip.x as i32, clip.y as i32);
        let (cx1, cy1) = (cx0 + clip.w as i32 - 1, cy0 + clip.h as i32 - 1);
        let (x0, y0, x1, y1) = (x0.max(cx0), y0.max(cy0), x1.min(cx1), y1.min(cy1));
        if x0 > x1 || y0 > y1 {
            return;
        }
        // plotters-bitmap's opaque fill covers [x0, x1) x [y0, y1): pass the exclusive corner.
        self.plot(|root| {
            root.draw(&Rectangle::new([(x0, y0), (x1 + 1, y1 + 1)], color.rgb().filled())).map_err(|e| e.to_string())
        });
    }
}

/// A labelled point on a chart ([`Ax::line_plot_marked`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub x: f64,
    pub y: f64,
    pub label: String,
    pub color: Color,
}

/// One series of a chart ([`Ax::series_plot`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
    pub color: Color,
    /// Its name in the legend (shown when two or more series have one).
    pub label: String,
    /// Dots instead of a line.
    pub dots: bool,
}

/// One panel of a [`Figure`]; coordinates are pixels of the image shown in it.
pub struct Ax<'a> {
    fig: &'a mut Figure,
    i: usize,
}

impl Ax<'_> {
    fn panel(&self) -> Option<Panel> {
        self.fig.panels.get(self.i).copied()
    }

    /// Canvas pixels per image pixel of what the panel shows (1 until an image is shown).
    pub fn scale(&self) -> f32 {
        self.panel().map(|p| p.placement.scale).unwrap_or(1.0).max(1e-3)
    }

    /// Show an image in the panel, scaled to fit and centred (the lesson's `show_img`).
    pub fn show_img(&mut self, im: &RgbImage) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let scale = (p.w as f32 / im.width() as f32).min(p.h as f32 / im.height() as f32);
        let (w, h) =
            (((im.width() as f32 * scale).round() as u32).max(1), ((im.height() as f32 * scale).round() as u32).max(1));
        let shown = if (w, h) == im.dimensions() {
            im.clone()
        } else {
            image::imageops::resize(im, w, h, image::imageops::FilterType::Triangle)
        };
        let (x0, y0) = (p.x + (p.w - w.min(p.w)) / 2, p.y + (p.h - h.min(p.h)) / 2);
        image::imageops::replace(&mut self.fig.canvas, &shown, x0 as i64, y0 as i64);
        self.fig.panels[self.i].placement = Placement { x0: x0 as f32, y0: y0 as f32, scale };
        self
    }

    /// Lesson 9's grid over an image: `n` lines each way at `np.linspace(0, size, n)` of the
    /// image's width and height (its `ax.set_xticks(np.linspace(0, 224, 8)); ax.grid()`), 1 px
    /// wide, in `color`.
    pub fn tick_grid(&mut self, n: usize, width: f32, height: f32, color: Color) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let Placement { x0, y0, scale } = p.placement;
        let at = |i: usize, size: f32| if n > 1 { size * i as f32 / (n - 1) as f32 } else { 0.0 };
        let fig = &mut *self.fig;
        for i in 0..n {
            let x = (x0 + at(i, width) * scale).round() as i32;
            let y = (y0 + at(i, height) * scale).round() as i32;
            let (l, t) = (x0.round() as i32, y0.round() as i32);
            let (r, b) = ((x0 + width * scale).round() as i32, (y0 + height * scale).round() as i32);
            fig.fill(x, t, x, b, color, p);
            fig.fill(l, y, r, y, color, p);
        }
        self
    }

    /// A filled square dot of side `2r + 1` centred on `(y, x)` in image pixels (a scatter point).
    pub fn dot(&mut self, y: f32, x: f32, r: i32, color: Color) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let Placement { x0, y0, scale } = p.placement;
        let (cx, cy) = ((x0 + x * scale).round() as i32, (y0 + y * scale).round() as i32);
        self.fig.fill(cx - r, cy - r, cx + r, cy + r, color, p);
        self
    }

    /// The lesson's `draw_rect`: the box outline in `color`, width 2, over a black outline of
    /// width 4.
    pub fn draw_rect(&mut self, b: BBox, color: Color) -> &mut Self {
        self.outline_rect(b, 4, Color::BLACK);
        self.outline_rect(b, 2, color)
    }

    /// The box filled with `color` (inclusive pixel corners, clipped to the panel).
    pub fn fill_rect(&mut self, b: BBox, color: Color) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let Placement { x0, y0, scale } = p.placement;
        let (l, t) = ((x0 + b.left * scale).round() as i32, (y0 + b.top * scale).round() as i32);
        let (r, btm) =
            ((x0 + (b.right + 1.0) * scale).round() as i32 - 1, (y0 + (b.bottom + 1.0) * scale).round() as i32 - 1);
        self.fig.fill(l, t, r, btm, color, p);
        self
    }

    /// A legend: a filled square of each colour and its name, left to right, wrapping.
    pub fn legend(&mut self, items: &[(Color, &str)], sz: u32) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let (mut x, mut y) = (4.0f32, 4.0f32);
        for (color, name) in items {
            let w = sz as f32 + 8.0 + name.chars().count() as f32 * sz as f32 * 0.62 + 14.0;
            if x + w > p.w as f32 && x > 4.0 {
                x = 4.0;
                y += sz as f32 + 6.0;
            }
            self.fill_rect(BBox::new(y + 1.0, x, y + sz as f32 - 2.0, x + sz as f32 - 3.0), Color::BLACK);
            self.fill_rect(BBox::new(y + 2.0, x + 1.0, y + sz as f32 - 3.0, x + sz as f32 - 4.0), *color);
            self.draw_text_lines(y, x + sz as f32 + 2.0, name, sz, Color::WHITE, 1);
            x += w;
        }
        self
    }

    /// A rectangle outline of `lw` pixels centred on the box's outer edges (no black outline).
    pub fn outline_rect(&mut self, b: BBox, lw: i32, color: Color) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let Placement { x0, y0, scale } = p.placement;
        // Outer pixel edges of the box, on the canvas.
        let l = (x0 + b.left * scale).round() as i32;
        let r = (x0 + (b.right + 1.0) * scale).round() as i32;
        let t = (y0 + b.top * scale).round() as i32;
        let btm = (y0 + (b.bottom + 1.0) * scale).round() as i32;
        let (lo, hi) = (lw / 2, lw - lw / 2 - 1); // line covers [edge - lo, edge + hi]
        let fig = &mut *self.fig;
        fig.fill(l - lo, t - lo, r + hi, t + hi, color, p); // top
        fig.fill(l - lo, btm - lo, r + hi, btm + hi, color, p); // bottom
        fig.fill(l - lo, t - lo, l + hi, btm + hi, color, p); // left
        fig.fill(r - lo, t - lo, r + hi, btm + hi, color, p); // right
        self
    }

    /// The lesson's `draw_text`: bold text of `sz` pixels, top-left at `(top, left)` in image
    /// pixels, with a 1 px black outline. Text never leaves its panel: it wraps at spaces onto
    /// more lines, a word too long for a line is cut with `…`, and lines below the panel are
    /// dropped, the last one shown ending in `…`.
    pub fn draw_text(&mut self, top: f32, left: f32, txt: &str, sz: u32, color: Color) -> &mut Self {
        self.draw_text_lines(top, left, txt, sz, color, usize::MAX)
    }

    /// [`Ax::draw_text`] in at most `max_lines` lines (a box's label: one line, shortened).
    pub fn draw_text_lines(
        &mut self,
        top: f32,
        left: f32,
        txt: &str,
        sz: u32,
        color: Color,
        max_lines: usize,
    ) -> &mut Self {
        let Some(p) = self.panel() else { return self };
        let Placement { x0, y0, scale } = p.placement;
        let x = (x0 + left * scale).round() as i32;
        let y = (y0 + top * scale).round() as i32;
        if !register_font() {
            self.fig.error.get_or_insert_with(|| "the embedded font could not be loaded".into());
            return self;
        }
        let (px, py, pw, ph) = (p.x as i32, p.y as i32, p.w as i32, p.h as i32);
        let (x, y) = ((x - px).clamp(0, (pw - 1).max(0)), (y - py).clamp(0, (ph - 1).max(0)));
        let font = FontDesc::new(FontFamily::Name(FONT_NAME), sz as f64, FontStyle::Bold);
        let width = |s: &str| font.box_size(s).map(|(w, _)| w as i32 + 2).unwrap_or(i32::MAX);
        let fit_lines = ((ph - y) / (sz as i32 + 1).max(1)).max(1) as usize;
        let lines = wrap_text(txt, (pw - x - 1).max(1), fit_lines.min(max_lines), &width);
        // The lesson's black outline; dark text (tables, charts) gets a white one.
        let outline = if (color.0 as u32 + color.1 as u32 + color.2 as u32) < 3 * 100 { WHITE } else { BLACK };
        self.fig.plot(|root| {
            let area = root.clone().shrink((px, py), (pw as u32, ph as u32));
            let pos = Pos::new(HPos::Left, VPos::Top);
            for (k, line) in lines.iter().enumerate() {
                let ly = y + k as i32 * (sz as i32 + 1);
                for (dx, dy) in [(-1, -1), (0, -1), (1, -1), (-1, 0), (1, 0), (-1, 1), (0, 1), (1, 1)] {
                    let style = font.clone().color(&outline).pos(pos);
                    area.draw_text(line, &style, (x + dx, ly + dy)).map_err(|e| e.to_string())?;
                }
                area.draw_text(line, &font.clone().color(&color.rgb()).pos(pos), (x, ly)).map_err(|e| e.to_string())?;
            }
            Ok(())
        });
        self
    }

    /// The width in pixels of `txt` drawn by [`Ax::draw_text`] at `sz` (for centring and fitting
    /// labels); 0 when the embedded font cannot be loaded.
    pub fn text_width(txt: &str, sz: u32) -> i32 {
        if !register_font() {
            return 0;
        }
        let font = FontDesc::new(FontFamily::Name(FONT_NAME), sz as f64, FontStyle::Bold);
        font.box_size(txt).map(|(w, _)| w as i32 + 2).unwrap_or(0)
    }

    /// A line chart of `ys` against `xs` filling the panel, with axis labels; `log_x` puts x on a
    /// log scale (non-positive x are then left out, as are non-finite points).
    pub fn line_plot(&mut self, xs: &[f64], ys: &[f64], xlabel: &str, ylabel: &str, log_x: bool) -> &mut Self {
        self.line_plot_marked(xs, ys, xlabel, ylabel, log_x, &[])
    }

    /// [`Ax::line_plot`] with labelled points marked on the curve (a suggested learning rate).
    pub fn line_plot_marked(
        &mut self,
        xs: &[f64],
        ys: &[f64],
        xlabel: &str,
        ylabel: &str,
        log_x: bool,
        marks: &[Mark],
    ) -> &mut Self {
        self.chart_series(&[blue_line(xs, ys)], xlabel, ylabel, log_x, marks, None)
    }

    /// [`Ax::line_plot`] on fixed axes `x` and `y` (a precision-recall curve on 0..1 x 0..1, so
    /// that panels compare at a glance).
    pub fn line_plot_in(
        &mut self,
        xs: &[f64],
        ys: &[f64],
        xlabel: &str,
        ylabel: &str,
        x: (f64, f64),
        y: (f64, f64),
    ) -> &mut Self {
        self.chart_series(&[blue_line(xs, ys)], xlabel, ylabel, false, &[], Some((x, y)))
    }

    /// Several series on one chart (a line, or dots for a series with `dots`), with a legend
    /// when more than one has a label: a fit's training loss per batch beside its validation loss
    /// per epoch.
    pub fn series_plot(&mut self, series: &[Series], xlabel: &str, ylabel: &str) -> &mut Self {
        self.chart_series(series, xlabel, ylabel, false, &[], None)
    }

    fn chart_series(
        &mut self,
        series: &[Series],
        xlabel: &str,
        ylabel: &str,
        log_x: bool,
        marks: &[Mark],
        fixed: Option<((f64, f64), (f64, f64))>,
    ) -> &mut Self {
        let keep = |x: f64, y: f64| x.is_finite() && y.is_finite() && (!log_x || x > 0.0);
        let sets: Vec<(Vec<(f64, f64)>, &Series)> = series
            .iter()
            .map(|s| (s.xs.iter().zip(&s.ys).map(|(&x, &y)| (x, y)).filter(|&(x, y)| keep(x, y)).collect(), s))
            .collect();
        let pts: Vec<(f64, f64)> = sets.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        if pts.is_empty() || !register_font() {
            return self.draw_text(4.0, 4.0, "no data", 14, Color::BLACK);
        }
        let range = |v: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
            axis_range(lo, hi)
        };
        let ((x0, x1), (y0, y1)) = fixed.unwrap_or_else(|| {
            let (y0, y1) = range(&mut pts.iter().map(|p| p.1));
            let pad = (y1 - y0) * 0.05;
            (range(&mut pts.iter().map(|p| p.0)), (y0 - pad, y1 + pad))
        });
        let legend = series.iter().filter(|s| !s.label.is_empty()).count() > 1;
        // Whole-number x (iterations, epochs) gets whole-number ticks: epochs 0..2 read 0, 1, 2,
        // not 0.0, 0.5, ...
        let whole_x = !log_x && fixed.is_none() && pts.iter().all(|p| p.0.fract() == 0.0);
        let x_ticks = if whole_x { ((x1 - x0).round() as usize + 1).clamp(2, 6) } else { 6 };
        let whole = |v: &f64| format!("{v:.0}");
        let corner = legend_corner(&pts, (x0, x1), (y0, y1), log_x);
        let Some(p) = self.panel() else { return self };
        // The chart draws in panel pixels; the image placement no longer applies.
        self.fig.panels[self.i].placement = Placement { x0: p.x as f32, y0: p.y as f32, scale: 1.0 };
        let (xlabel, ylabel) = (xlabel.to_string(), ylabel.to_string());
        self.fig.plot(|root| {
            let area = root.clone().shrink((p.x as i32, p.y as i32), (p.w, p.h));
            area.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut builder = ChartBuilder::on(&area);
            builder.margin(10).x_label_area_size(40).y_label_area_size(64);
            macro_rules! draw {
                ($chart:expr) => {{
                    let mut chart = $chart.map_err(|e| e.to_string())?;
                    let mut mesh = chart.configure_mesh();
                    mesh.x_desc(xlabel.as_str())
                        .y_desc(ylabel.as_str())
                        .label_style(("sans-serif", 12))
                        .axis_desc_style(("sans-serif", 13))
                        .x_labels(x_ticks)
                        .y_labels(6);
                    if whole_x {
                        mesh.x_label_formatter(&whole);
                    }
                    mesh.draw().map_err(|e| e.to_string())?;
                    for (pts, s) in &sets {
                        let color = s.color.rgb();
                        let drawn = if s.dots {
                            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                        } else {
                            chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                        }
                        .map_err(|e| e.to_string())?;
                        if legend && !s.label.is_empty() {
                            drawn.label(s.label.clone()).legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                            });
                        }
                    }
                    for m in marks.iter().filter(|m| keep(m.x, m.y)) {
                        let style = ("sans-serif", 13).into_font().color(&m.color.rgb());
                        chart
                            .draw_series([EmptyElement::at((m.x, m.y))
                                + Circle::new((0, 0), 5, m.color.rgb().filled())
                                + Text::new(m.label.clone(), (8, -16), style)])
                            .map_err(|e| e.to_string())?;
                    }
                    if legend {
                        chart
                            .configure_series_labels()
                            .position(corner)
                            .label_font(("sans-serif", 12))
                            .background_style(WHITE.mix(0.8))
                            .border_style(BLACK.mix(0.3))
                            .draw()
                            .map_err(|e| e.to_string())?;
                    }
                }};
            }
            if log_x {
                draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1));
            } else {
                draw!(builder.build_cartesian_2d(x0..x1, y0..y1));
            }
            Ok(())
        });
        self
    }

    /// A histogram: one bar per `(lo, hi, count)` from `lo` to `hi` on x, in `color`, on axes
    /// that start at 0; `x_label` formats the x ticks (`None`: plotters' numbers).
    pub fn bar_plot(
        &mut self,
        bars: &[(f64, f64, f64)],
        xlabel: &str,
        ylabel: &str,
        color: Color,
        x_label: Option<&dyn Fn(f64) -> String>,
    ) -> &mut Self {
        let bars: Vec<(f64, f64, f64)> =
            bars.iter().copied().filter(|b| b.0.is_finite() && b.1 > b.0 && b.2.is_finite()).collect();
        if bars.is_empty() || !register_font() {
            return self.draw_text(4.0, 4.0, "no data", 14, Color::BLACK);
        }
        let (x0, x1) = (
            bars.iter().map(|b| b.0).fold(f64::INFINITY, f64::min),
            bars.iter().map(|b| b.1).fold(f64::NEG_INFINITY, f64::max),
        );
        let top = bars.iter().map(|b| b.2).fold(0.0, f64::max).max(1.0) * 1.08;
        let Some(p) = self.panel() else { return self };
        self.fig.panels[self.i].placement = Placement { x0: p.x as f32, y0: p.y as f32, scale: 1.0 };
        let (xlabel, ylabel) = (xlabel.to_string(), ylabel.to_string());
        self.fig.plot(|root| {
            let area = root.clone().shrink((p.x as i32, p.y as i32), (p.w, p.h));
            area.fill(&WHITE).map_err(|e| e.to_string())?;
            let mut chart = ChartBuilder::on(&area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x0..x1, 0.0..top)
                .map_err(|e| e.to_string())?;
            let default_fmt = |v: &f64| format!("{v:.2}");
            let fmt = |v: &f64| x_label.map_or_else(|| default_fmt(v), |f| f(*v));
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_desc(xlabel.as_str())
                .y_desc(ylabel.as_str())
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .x_labels(7)
                .y_labels(6)
                .x_label_formatter(&fmt)
                .y_label_formatter(&|v| format!("{v:.0}"))
                .draw()
                .map_err(|e| e.to_string())?;
            let (fill, edge) = (color.rgb().filled(), BLACK.mix(0.4).stroke_width(1));
            chart
                .draw_series(bars.iter().map(|&(lo, hi, v)| Rectangle::new([(lo, 0.0), (hi, v)], fill)))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(
                    bars.iter().filter(|b| b.2 > 0.0).map(|&(lo, hi, v)| Rectangle::new([(lo, 0.0), (hi, v)], edge)),
                )
                .map_err(|e| e.to_string())?;
            Ok(())
        });
        self
    }

    /// A heat map of `cells[row][col]` (shaded white to dark blue by the square root of their
    /// share of the largest, so that cells of a few show beside a crowded one)
    /// with axes: columns span `x.0..x.1` left to right, rows `y.0` (row 0, at the top) to `y.1`
    /// (the last row, at the bottom), as an image's rows run.
    pub fn heat_map(
        &mut self,
        cells: &[Vec<f64>],
        x: (f64, f64),
        y: (f64, f64),
        xlabel: &str,
        ylabel: &str,
    ) -> &mut Self {
        let (rows, cols) = (cells.len(), cells.first().map_or(0, Vec::len));
        if rows == 0 || cols == 0 || !register_font() {
            return self.draw_text(4.0, 4.0, "no data", 14, Color::BLACK);
        }
        let max = cells.iter().flatten().copied().fold(0.0, f64::max);
        let Some(p) = self.panel() else { return self };
        self.fig.panels[self.i].placement = Placement { x0: p.x as f32, y0: p.y as f32, scale: 1.0 };
        let (xlabel, ylabel) = (xlabel.to_string(), ylabel.to_string());
        self.fig.plot(|root| {
            let area = root.clone().shrink((p.x as i32, p.y as i32), (p.w, p.h));
            area.fill(&WHITE).map_err(|e| e.to_string())?;
            // The chart's own y runs 0 (bottom) to 1 (top); the labels say the caller's y.
            let mut chart = ChartBuilder::on(&area)
                .margin(10)
                .x_label_area_size(40)
                .y_label_area_size(56)
                .build_cartesian_2d(x.0..x.1, 0.0..1.0)
                .map_err(|e| e.to_string())?;
            let y_of = |t: f64| y.1 + t * (y.0 - y.1);
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(xlabel.as_str())
                .y_desc(ylabel.as_str())
                .label_style(("sans-serif", 12))
                .axis_desc_style(("sans-serif", 13))
                .x_labels(6)
                .y_labels(6)
                .x_label_formatter(&|v| format!("{v:.1}"))
                .y_label_formatter(&|t| format!("{:.1}", y_of(*t)))
                .draw()
                .map_err(|e| e.to_string())?;
            let (cw, ch) = ((x.1 - x.0) / cols as f64, 1.0 / rows as f64);
            let shade = |v: f64| {
                let f = if max > 0.0 { (v / max).sqrt() } else { 0.0 };
                let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
                RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
            };
            let rects = cells.iter().enumerate().flat_map(|(r, row)| {
                row.iter().enumerate().map(move |(c, &v)| {
                    let (l, t) = (x.0 + c as f64 * cw, 1.0 - r as f64 * ch);
                    Rectangle::new([(l, t), (l + cw, t - ch)], shade(v).filled())
                })
            });
            chart.draw_series(rects).map_err(|e| e.to_string())?;
            Ok(())
        });
        self
    }

    /// A box in `color` with its label at the top-left corner (the lesson's `draw_im` step), on
    /// one line, shortened with `…` where the panel ends.
    pub fn draw_labelled(&mut self, b: BBox, label: &str, sz: u32, color: Color) -> &mut Self {
        self.draw_rect(b, color);
        self.draw_text_lines(b.top, b.left, label, sz, color, 1)
    }

    /// The lesson's `show_ground_truth(ax, im, bbox, clas, prs, thresh)`: lesson 9's `show_img`
    /// (the image under its 8-tick grid, [`Ax::show_img_grid`]), then
    /// [`Ax::draw_ground_truth`].
    pub fn show_ground_truth(
        &mut self,
        im: &RgbImage,
        boxes: &[BBox],
        clas: Option<&[usize]>,
        prs: Option<&[f32]>,
        thresh: f32,
        classes: &[String],
    ) -> &mut Self {
        self.show_img_grid(im);
        self.draw_ground_truth(boxes, clas, prs, thresh, classes)
    }

    /// Lesson 9's `show_img`: the image with `ax.set_xticks(np.linspace(0, 224, 8))` (and the
    /// same for y) and `ax.grid()`: 8 lines each way over the image, in [`Color::GRID`].
    pub fn show_img_grid(&mut self, im: &RgbImage) -> &mut Self {
        self.show_img(im).tick_grid(LESSON_TICKS, im.width() as f32, im.height() as f32, Color::GRID)
    }

    /// The boxes of the lesson's `show_ground_truth` over what the panel shows: box `i` in
    /// `SET3[i % 12]` labelled `"i: class"` (`"bg"` for class `classes.len()`) and `" 0.87"` when
    /// probabilities are given; only non-empty boxes whose probability exceeds `thresh` are
    /// drawn.
    pub fn draw_ground_truth(
        &mut self,
        boxes: &[BBox],
        clas: Option<&[usize]>,
        prs: Option<&[f32]>,
        thresh: f32,
        classes: &[String],
    ) -> &mut Self {
        for (i, b) in boxes.iter().enumerate() {
            let pr = prs.and_then(|p| p.get(i).copied());
            if b.is_empty() || pr.is_some_and(|p| p <= thresh) {
                continue;
            }
            let mut txt = format!("{i}: ");
            if let Some(c) = clas.and_then(|c| c.get(i).copied()) {
                txt += classes.get(c).map(String::as_str).unwrap_or("bg");
            }
            if let Some(p) = pr {
                txt += &format!(" {p:.2}");
            }
            self.draw_labelled(*b, &txt, 14, SET3[i % SET3.len()]);
        }
        self
    }
}

/// `txt` in at most `max_lines` lines no wider than `max_w` by `width`: words wrapped at
/// spaces, a word too long for a line cut with `…`, and `…` ending the last line when words are
/// left over. (At least one line, perhaps only `…`.)
pub fn wrap_text(txt: &str, max_w: i32, max_lines: usize, width: &dyn Fn(&str) -> i32) -> Vec<String> {
    const ELL: char = '…';
    let fit = |s: &str| -> String {
        if width(s) <= max_w {
            return s.to_string();
        }
        let chars: Vec<char> = s.chars().collect();
        let mut n = chars.len();
        while n > 0 {
            let cut: String = chars[..n].iter().chain(std::iter::once(&ELL)).collect();
            if width(&cut) <= max_w {
                return cut;
            }
            n -= 1;
        }
        ELL.to_string()
    };
    let mut lines: Vec<String> = vec![];
    let mut cur = String::new();
    for word in txt.split_whitespace() {
        let joined = if cur.is_empty() { word.to_string() } else { format!("{cur} {word}") };
        if cur.is_empty() || width(&joined) <= max_w {
            cur = joined;
        } else {
            lines.push(fit(&cur));
            cur = word.to_string();
        }
    }
    if !cur.is_empty() || lines.is_empty() {
        lines.push(fit(&cur));
    }
    if lines.len() > max_lines.max(1) {
        let keep = max_lines.max(1);
        lines.truncate(keep);
        let last = lines.pop().unwrap_or_default();
        let last = last.trim_end_matches(ELL).to_string();
        lines.push(fit(&format!("{last}{ELL}")));
    }
    lines
}

/// Lines each way of lesson 9's grid (`np.linspace(0, 224, 8)`).
pub const LESSON_TICKS: usize = 8;

/// The lesson's `show_img(im)`: a figure of one image at its own size.
pub fn show_img(im: &RgbImage) -> Figure {
    let mut fig = Figure::single(im.width(), im.height());
    fig.ax(0).show_img(im);
    fig
}

/// The lesson's `draw_im(im, ann)`: the image with every `(box, class)` outlined and named.
pub fn draw_im(im: &RgbImage, ann: &[(BBox, usize)], classes: &[String]) -> Figure {
    let mut fig = show_img(im);
    let mut ax = fig.ax(0);
    for &(b, c) in ann {
        let name = classes.get(c).map(String::as_str).unwrap_or("?");
        ax.draw_labelled(b, name, 16, Color::WHITE);
    }
    fig
}

/// What a value shows in a notebook (evcxr's MIME types).
#[derive(Debug)]
pub enum Display {
    /// A PNG picture, or the error that kept it from being drawn (shown as text).
    Png(Result<Vec<u8>>),
    Html(String),
    Text(String),
}

/// evcxr's display protocol, written once: a `evcxr_display(&self)` method calls this, and the
/// notebook shows the content when the cell ends (the last one of each kind).
pub fn evcxr_show(content: &Display) {
    use base64::Engine;
    let (mime, body) = match content {
        Display::Png(Ok(png)) => ("image/png", base64::engine::general_purpose::STANDARD.encode(png)),
        Display::Png(Err(e)) => ("text/plain", e.to_string()),
        Display::Html(h) => ("text/html", h.clone()),
        Display::Text(t) => ("text/plain", t.clone()),
    };
    println!("EVCXR_BEGIN_CONTENT {mime}\n{body}\nEVCXR_END_CONTENT");
}

/// The axis range for data from `lo` to `hi`: the data's own, or for one value (a constant
/// learning rate) 10% either side of it, so that the line shows where it is even at 1e-3.
/// Where a chart's legend hides the fewest points: the corner (upper right first, then lower
/// right, upper left, lower left) with the fewest points in its third of each axis. A loss falls
/// away from the upper right; a rising mAP ends there, and its legend goes below.
fn legend_corner(pts: &[(f64, f64)], (x0, x1): (f64, f64), (y0, y1): (f64, f64), log_x: bool) -> SeriesLabelPosition {
    let fx = |x: f64| if log_x { (x.ln() - x0.ln()) / (x1.ln() - x0.ln()) } else { (x - x0) / (x1 - x0) };
    let fy = |y: f64| (y - y0) / (y1 - y0);
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let hidden = |right: bool, upper: bool| {
        pts.iter()
            .filter(|&&(x, y)| {
                let (u, v) = (fx(x), fy(y));
                (if right { u >= 2.0 / 3.0 } else { u <= 1.0 / 3.0 })
                    && (if upper { v >= 2.0 / 3.0 } else { v <= 1.0 / 3.0 })
            })
            .count()
    };
    let mut best = (usize::MAX, SeriesLabelPosition::UpperRight);
    for (pos, right, upper) in corners {
        let n = hidden(right, upper);
        if n < best.0 {
            best = (n, pos);
        }
    }
    best.1
}

fn axis_range(lo: f64, hi: f64) -> (f64, f64) {
    if hi > lo {
        (lo, hi)
    } else {
        let pad = if lo == 0.0 { 0.5 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    }
}

/// One unlabelled curve in matplotlib's first colour.
fn blue_line(xs: &[f64], ys: &[f64]) -> Series {
    Series { xs: xs.to_vec(), ys: ys.to_vec(), color: Color(31, 119, 180), label: String::new(), dots: false }
}

#[cfg(test)]
mod tests {
    use super::{axis_range, legend_corner};
    use plotters::prelude::SeriesLabelPosition;

    #[test]
    fn the_legend_goes_where_the_curve_is_not() {
        let xy = |ys: &[f64]| ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect::<Vec<_>>();
        let at = |ys: &[f64]| legend_corner(&xy(ys), (0.0, ys.len() as f64 - 1.0), (0.0, 1.0), false);
        // A falling loss leaves the upper right free; a rising mAP ends there.
        assert!(matches!(at(&[1.0, 0.6, 0.4, 0.3, 0.2, 0.1]), SeriesLabelPosition::UpperRight));
        assert!(matches!(at(&[0.1, 0.1, 0.2, 0.4, 0.7, 0.95]), SeriesLabelPosition::LowerRight));
        // Points high and low on the right only: the upper left.
        let right = [(0.9, 0.9), (0.95, 0.1), (1.0, 0.5)];
        assert!(matches!(legend_corner(&right, (0.0, 1.0), (0.0, 1.0), false), SeriesLabelPosition::UpperLeft));
    }

    #[test]
    fn a_constant_series_gets_an_axis_around_its_value() {
        let (lo, hi) = axis_range(1e-3, 1e-3);
        assert!((lo - 0.9e-3).abs() < 1e-12 && (hi - 1.1e-3).abs() < 1e-12, "{lo} {hi}");
        assert_eq!(axis_range(0.0, 0.0), (-0.5, 0.5));
        assert_eq!(axis_range(2.0, 5.0), (2.0, 5.0));
    }
}
