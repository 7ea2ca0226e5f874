//! # fastdet
//!
//! fast.ai's object-detection lessons (Deep Learning Part 2, 2018: lesson 8 `pascal.ipynb` and
//! lesson 9 `pascal-multi.ipynb`, Pascal VOC 2007 with a ResNet34 at 224x224) as a Rust crate
//! for evcxr notebooks and the command line.
//!
//! - [`boxes`]: the box type and its one convention `(top, left, bottom, right)`, inclusive;
//! - [`data`]: the lesson's JSON and VOC XML into one [`data::Dataset`], splits, lesson CSVs;
//! - [`transforms`]: augmentation where boxes follow the image (`tfm_y=TfmType.COORD`);
//! - [`data::loader`]: datasets of the lesson's targets and a parallel, prefetching loader;
//! - [`draw`]: images, boxes and labels drawn with plotters, shown inline in notebooks;
//! - [`device`]: CUDA when present, else CPU.
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
pub mod learner;
pub mod loss;
pub mod metrics;
pub mod model;
pub mod nms;
pub mod ssd;
pub mod train;
pub mod transforms;
mod util;

pub use error::{Error, Result};
/// The tch version fastdet is built with, so notebooks need no separate `:dep tch`.
pub use tch;
/// The image crate fastdet decodes with (`RgbImage` is its type).
pub use image;

/// Quick mode (`FASTDET_QUICK=1`, set by `make lesson` and `make test`): notebooks train for a few
/// batches at a small size so they run on a CPU in seconds; unset, they use the lesson's settings.
pub fn quick_mode() -> bool {
    std::env::var("FASTDET_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// What a notebook needs in one `use`.
pub mod prelude {
    pub use crate::boxes::{bb_hw, hw_bb, BBox};
    pub use crate::data::{get_cv_idxs, open_image, Dataset, ImageRecord, Object, Pascal, VOC_CLASSES};
    pub use crate::device::default_device;
    pub use crate::data::{Batch, BatchTarget, DataLoader, DetDataset, ImageData, TargetKind};
    pub use crate::draw::{draw_idx, draw_im, show_augmented, show_batch, show_predictions, Color, Figure};
    pub use crate::learner::{FitOpts, Learner, Lrs};
    pub use crate::loss::{Loss, Metric};
    pub use crate::model::{find_weights, Arch, HeadKind};
    pub use crate::anchors::{AnchorConfig, Anchors};
    pub use crate::metrics::{evaluate, ApTable, Metric as ApMetric};
    pub use crate::nms::{show_nmf, NmfOpts};
    pub use crate::quick_mode;
    pub use crate::ssd::{show_results, ClassLoss, Matching, SsdConfig, SsdOutput};
    pub use crate::transforms::{
        denorm, tfms_from_model, Aug, Augmented, CropType, Plan, RandomFlip, RandomLighting, RandomRotate, Step, TfmY, Tfms,
    };
    pub use crate::error::{Error, Result};
    pub use image::RgbImage;
    pub use tch::{Device, Kind, Tensor};
}
