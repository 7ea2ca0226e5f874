//! One error type for the crate. Every variant that comes from user data names the file, and
//! where there is one, the image, the field or the epoch, and says what was expected and what
//! was found.
//!
//! Each error says its message once: a variant that wraps another error (`Io`, `Json`, `Torch`)
//! writes that error's message into its own and does not also return it from
//! [`std::error::Error::source`], so a reporter that prints the chain (`anyhow`'s `{:#}`, as the
//! command line does) does not print it twice. The wrapped error stays in the variant's field.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A dataset folder that is not there; `hint` says how to get it.
    #[error("dataset folder {path} not found ({hint})")]
    MissingDataset { path: PathBuf, hint: String },

    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{path}: malformed JSON: {error}")]
    Json { path: PathBuf, error: serde_json::Error },

    #[error("{path}: malformed XML: {message}")]
    Xml { path: PathBuf, message: String },

    /// A problem with one image's annotation: a bad box, an unknown class, a missing field.
    #[error("{path}: image {image}: {problem}")]
    Annotation { path: PathBuf, image: String, problem: String },

    /// A line of a text annotation file (a YOLO label file, `data.yaml`, `classes.txt`) that
    /// cannot be read: `line` is 1-based.
    #[error("{path}:{line}: {problem}")]
    Label { path: PathBuf, line: usize, problem: String },

    /// A dataset folder or file whose layout or contents cannot be read as a whole (no format
    /// found, a split that is not there, a missing class-names file).
    #[error("{path}: {problem}")]
    Dataset { path: PathBuf, problem: String },

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

    /// A failure inside libtorch (or tch's own file handling).
    #[error("{0}")]
    Torch(tch::TchError),
}

impl From<tch::TchError> for Error {
    fn from(e: tch::TchError) -> Self {
        Error::Torch(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A number as a message shows it: as Rust writes it when that is short (`0.003`, `25`), in
/// scientific notation when that would be long (`1e300`, not a 301-digit number; `1.2345678e-9`).
pub(crate) fn num(x: f64) -> String {
    let plain = x.to_string();
    if plain.len() > 12 {
        format!("{x:e}")
    } else {
        plain
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io { path: path.into(), error }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, error: serde_json::Error) -> Self {
        Error::Json { path: path.into(), error }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_messages_stay_short() {
        assert_eq!(num(1e300), "1e300");
        assert_eq!(num(-1e300), "-1e300");
        assert_eq!(num(0.003), "0.003");
        assert_eq!(num(25.0), "25");
        assert_eq!(num(1.2345678e-9), "1.2345678e-9");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(f64::INFINITY), "inf");
    }

    #[test]
    fn a_wrapped_error_is_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = Error::io("a.json", io);
        assert_eq!(e.to_string(), "a.json: gone");
        assert!(std::error::Error::source(&e).is_none());
        assert_eq!(format!("{:#}", anyhow::Error::from(e)), "a.json: gone");
    }
}
