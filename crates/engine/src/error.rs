use std::path::PathBuf;

/// Why a model could not be loaded or its engine thread started.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("initialising llama.cpp: {0}")]
    BackendInit(String),
    #[error("model file {0} does not exist")]
    ModelMissing(PathBuf),
    #[error("loading model {path}: {reason}")]
    ModelLoad { path: PathBuf, reason: String },
    #[error("creating the llama.cpp context: {0}")]
    Context(String),
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error("preparing constrained decoding: {0}")]
    Grammar(String),
    #[error("starting the engine thread: {0}")]
    Thread(String),
    #[error("opening the disk prefix cache: {0}")]
    DiskCache(String),
    #[error(transparent)]
    Placement(#[from] crate::placement::PlacementError),
}
