//! # fastdet
//!
//! fast.ai's object-detection lessons (Deep Learning Part 2, 2018: lesson 8 `pascal.ipynb` and
//! lesson 9 `pascal-multi.ipynb`, Pascal VOC 2007 with a ResNet34 at 224x224) as a Rust crate
//! for evcxr notebooks and the command line.
//!
//! Layers, each using only those above it:
//! - [`error`], [`device`], [`boxes`]: the error type, CUDA or CPU, and all box arithmetic
//!   (one convention `(top, left, bottom, right)`, inclusive; IoU; unit corners);
//! - [`data`], [`transforms`]: the lesson's JSON and VOC XML into one [`data::Dataset`], splits,
//!   lesson CSVs, the synthetic shapes set; augmentation where boxes follow the image; datasets
//!   of the lesson's targets and a parallel, prefetching loader ([`data::loader`]);
//! - [`anchors`]: lesson 9's anchor grids, and activations back to boxes;
//! - [`model`]: a model as one value ([`model::Model`]: what it is, its network, its loss and
//!   decoding, saved and loaded with its description): the ResNet body, lesson 8's heads and
//!   losses, lesson 9's SSD ([`model::ssd`], its matching and loss in [`model::ssd_loss`]);
//! - [`metrics`], [`nms`]: epoch metrics and mAP; NMS;
//! - [`task`], [`learner`], [`stop`]: a task's target, head, loss and metrics; the fastai-style
//!   learner (fit you can stop, watch and restore); the stop flag and SIGINT guard;
//! - [`detect`], [`train`]: detections of a trained SSD; `fastdet train`'s runs;
//! - [`notebook`]: outputs shown while a cell runs and updated in place (fastdet's kernel
//!   launcher), with evcxr's and a terminal's fallbacks;
//! - [`draw`], [`show`]: drawing boxes and text on figures, and the pictures of everything
//!   above (the display layer, which nothing below imports).
//!
//! Where each of the lessons' names lives: docs/layout.md.
//!
//! `tests/it/layers.rs` checks the layering from the `use crate::` lines of `src/`: no import cycle
//! between modules, and no domain module imports [`draw`] or [`show`].
//!
//! ```no_run
//! use fastdet::prelude::*;
//! let pascal = Pascal::open(fastdet::data::sample_root())?;
//! let trn = pascal.json("train")?;
//! let fig = draw_idx(&trn, 0)?;
//! fig.save_png("first.png")?;
//! # Ok::<(), fastdet::Error>(())
//! ```

pub mod anchors;
pub mod boxes;
pub mod data;
pub mod detect;
pub mod device;
pub mod draw;
pub mod error;
pub mod interpret;
pub mod learner;
pub mod metrics;
pub mod model;
pub mod nms;
pub mod notebook;
pub mod show;
pub mod stop;
pub mod task;
pub mod train;
pub mod transforms;
mod util;

pub use error::{Error, Result};
/// The image crate fastdet decodes with (`RgbImage` is its type).
pub use image;
/// The tch version fastdet is built with, so notebooks need no separate `:dep tch`.
pub use tch;

/// Quick mode (`FASTDET_QUICK=1`, set by `make lesson` and `make test`): notebooks train for a few
/// batches at a small size so they run on a CPU in seconds; unset, they use the lesson's settings.
pub fn quick_mode() -> bool {
    std::env::var("FASTDET_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What a notebook needs in one `use`: the notebook API (see docs/contracts.md).
pub mod prelude {
    pub use crate::anchors::{AnchorConfig, Anchors};
    pub use crate::boxes::{bb_hw, hw_bb, iou_matrix, BBox};
    pub use crate::data::{get_cv_idxs, open_image, Dataset, ImageRecord, Object, Pascal, VOC_CLASSES};
    pub use crate::data::{open_dataset, DataSource, Format};
    pub use crate::data::{Batch, BatchTarget, DataLoader, DataOpts, DetDataset, ImageData, TargetKind};
    pub use crate::device::default_device;
    pub use crate::draw::{draw_im, show_img, Color, Figure};
    pub use crate::error::{Error, Result};
    pub use crate::interpret::Interpretation;
    pub use crate::learner::{Callback, ClipGradNorm, FitOpts, Flow, Learner, LearnerOpts, Lrs};
    pub use crate::metrics::{confusion, evaluate, ApMetric, ApTable, Confusion, Metric};
    pub use crate::model::ssd::{ClassLoss, Matching, SsdConfig, SsdOutput};
    pub use crate::model::{find_weights, Arch, HeadKind, Loss, Model, ModelOutput, ModelSpec, Prediction};
    pub use crate::nms::NmfOpts;
    pub use crate::notebook::{display, display_live, Live, Output, Show};
    pub use crate::quick_mode;
    pub use crate::show::{
        anchor_prediction_steps, dataset_report, detection_report, draw_idx, show_anchor_predictions, show_augmented,
        show_batch, show_image_errors, show_matchings, show_nmf, show_predictions, show_receptive_field, show_results,
        show_ssd_errors, show_truth_vs_prediction, Report, ReportOpts, Threshold,
    };
    pub use crate::task::{Task, TaskParts};
    pub use crate::transforms::{
        denorm, lesson_augmentations, tfms_from_model, transforms_side_on, Aug, Augmented, CropType, Plan, RandomFlip,
        RandomLighting, RandomRotate, Step, TfmY, Tfms,
    };
    pub use image::RgbImage;
    pub use tch::{Device, Kind, Tensor};
}
