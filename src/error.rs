//! One error type for the crate. Every variant that comes from user data names the file, and
//! where there is one, the image, and says what was expected and what was found.

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
}
