//! One error type for the crate. Every variant that comes from user data names the file, and
//! where there is one, the image, the field or the epoch, and says what was expected and what
//! was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset folder that is not there; `hint` says how to get it.
    #[error("dataset folder {path} not found ({hint})")]
    MissingDataset { path: PathBuf, hint: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: malformed JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },

    #[error("{path}: malformed XML: {message}")]
    Xml { path: PathBuf, message: String },

    /// A problem with one image's annotation: a bad box, an unknown class, a missing field.
    #[error("{path}: image {image}: {problem}")]
    Annotation { path: PathBuf, image: String, problem: String },

    /// The image file of a record is missing, unreadable, or not what the annotation says.
    #[error("image {image} ({path}): {problem}")]
    Image { path: PathBuf, image: String, problem: String },

    /// A value of a training config (`fastdet train`) that cannot work: `origin` is the config
    /// file (or "config" for one built in code), `field` the JSON path (`stages[1].use_clr`).
    #[error("{origin}: {field}: {problem}")]
    Config { origin: String, field: String, problem: String },

    /// A weights file that cannot be read, written or loaded into this model.
    #[error("{path}: {problem}")]
    Checkpoint { path: PathBuf, problem: String },

    /// A run folder of `fastdet train` that cannot be started, resumed or predicted from.
    #[error("{dir}: {problem}")]
    Run { dir: PathBuf, problem: String },

    /// A loss or metric that is NaN or infinite: training stops, the weights go back to the
    /// start of the epoch.
    #[error("training stopped: the {what} is {value} at epoch {epoch}{}; the weights are back to the start of that epoch (try a lower learning rate)", batch.map(|b| format!(", batch {b}")).unwrap_or_default())]
    NonFinite { what: String, value: f64, epoch: usize, batch: Option<usize> },

    /// A tensor whose shape is not what the function takes.
    #[error("{what}: expected {expected}, found {found:?}")]
    Shape { what: String, expected: String, found: Vec<i64> },

    /// A loss or metric applied to targets of another kind.
    #[error("{what} does not apply to a {target} target (check the dataset's TargetKind)")]
    TargetMismatch { what: String, target: &'static str },

    /// A picture that could not be drawn or encoded.
    #[error("drawing failed: {0}")]
    Draw(String),

    /// An argument that makes no sense (a split percentage above 1, a grid of 0 rows...).
    #[error("{0}")]
    Invalid(String),

    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Error::Checkpoint { path: path.into(), problem: problem.to_string() }
    }

    pub(crate) fn run(dir: impl Into<PathBuf>, problem: impl std::fmt::Display) -> Self {
        Error::Run { dir: dir.into(), problem: problem.to_string() }
    }

    /// Whether the error comes from what the user gave (data, config, arguments) rather than from
    /// a failure inside libtorch: the command line prints these without a backtrace.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Error::Torch(_))
    }
}
