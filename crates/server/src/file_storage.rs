//! Where uploaded files' bytes live, and what one workspace may keep there. The Files API
//! writes through it and documents read through it; neither knows the other.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use missive_protocol::ErrorType;
use missive_store::{FileMeta, Store};
use tokio::io::AsyncReadExt;

use crate::error::ApiError;
use crate::state::AppState;

/// The Claude API's upload cap.
pub const MAX_FILE_BYTES: u64 = 500 * 1024 * 1024;

/// Files of one workspace in all, unless the operator sets `[files] workspace_quota_gb`.
pub const DEFAULT_WORKSPACE_QUOTA_BYTES: u64 = 100 * 1024 * 1024 * 1024;

/// Suffix of an upload still being written; renamed away once whole.
const PARTIAL: &str = ".part";

/// How long a partial upload sits untouched before it counts as abandoned.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct FilesConfig {
    pub dir: PathBuf,
    /// The Claude API lets only files it created be downloaded; an operator may allow
    /// uploads too.
    pub downloadable_uploads: bool,
    /// Bytes one workspace's files may take in all.
    pub workspace_quota_bytes: u64,
}

impl FilesConfig {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            downloadable_uploads: false,
            workspace_quota_bytes: DEFAULT_WORKSPACE_QUOTA_BYTES,
        }
    }

    /// Removes uploads a crash left half-written. Run at start, before serving. Several
    /// replicas may share the directory, so a partial file is only removed once it has sat
    /// untouched for [`ABANDONED_AFTER`]: a fresh one is another replica's upload.
    pub fn sweep_partials(&self) -> std::io::Result<usize> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let abandoned = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| at.elapsed().ok())
                .is_some_and(|age| age >= ABANDONED_AFTER);
            if abandoned && entry.file_name().to_string_lossy().ends_with(PARTIAL) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

pub fn store(state: &AppState) -> Result<&Arc<dyn Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::not_found("The Files API needs a store; this server runs without one")
    })
}

pub fn config(state: &AppState) -> Result<&FilesConfig, ApiError> {
    state
        .files
        .as_deref()
        .ok_or_else(|| ApiError::not_found("The Files API is not enabled on this server"))
}

/// Where a file's bytes are.
pub fn path_of(config: &FilesConfig, id: &str) -> PathBuf {
    config.dir.join(id)
}

/// Where an upload is written until it is whole.
pub fn partial_path(config: &FilesConfig, id: &str) -> PathBuf {
    config.dir.join(format!("{id}{PARTIAL}"))
}

/// A file of this workspace, `None` if it has none by that id.
pub fn find(state: &AppState, workspace_id: &str, id: &str) -> Result<Option<FileMeta>, ApiError> {
    Ok(store(state)?.file(workspace_id, id)?)
}

/// How many more bytes the workspace may upload: the smaller of the per-file cap and what
/// its quota has left.
pub fn upload_allowance(state: &AppState, workspace_id: &str) -> Result<u64, ApiError> {
    allowance(store(state)?.as_ref(), config(state)?, workspace_id)
}

fn allowance(store: &dyn Store, config: &FilesConfig, workspace_id: &str) -> Result<u64, ApiError> {
    let quota = config.workspace_quota_bytes;
    let used: u64 = store
        .list_files(workspace_id)?
        .iter()
        .map(|f| f.size_bytes)
        .sum();
    if used >= quota {
        return Err(ApiError::new(
            ErrorType::RequestTooLarge,
            format!(
                "file: this workspace's files use {used} of its {quota} bytes; delete files before uploading more"
            ),
        ));
    }
    Ok(MAX_FILE_BYTES.min(quota - used))
}

/// The media type of an upload: what the client said, unless it said nothing useful, then
/// what the name's extension says.
pub fn mime_for(filename: &str, given: Option<&str>) -> String {
    if let Some(given) = given.filter(|m| !m.is_empty() && *m != "application/octet-stream") {
        return given.to_owned();
    }
    let ext = filename
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => "application/pdf",
        "txt" | "text" => "text/plain",
        "md" => "text/markdown",
        "csv" => "text/csv",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        _ => given.unwrap_or("application/octet-stream"),
    }
    .to_owned()
}

/// One workspace's Files API, as code execution reaches it: the files a command writes are
/// saved as downloadable files (as the Claude API makes them), and `container_upload`
/// blocks read files.
pub struct WorkspaceFiles {
    pub store: Arc<dyn Store>,
    pub config: Arc<FilesConfig>,
    pub workspace_id: String,
}

impl WorkspaceFiles {
    /// The sink for this workspace, when the server has a Files API.
    pub fn of(state: &AppState, workspace_id: &str) -> Option<Arc<dyn missive_tools::Files>> {
        Some(Arc::new(Self {
            store: state.store.clone()?,
            config: state.files.clone()?,
            workspace_id: workspace_id.to_owned(),
        }))
    }
}

#[async_trait::async_trait]
impl missive_tools::Files for WorkspaceFiles {
    async fn save(&self, path: &str, bytes: Vec<u8>) -> Result<String, String> {
        let left = allowance(self.store.as_ref(), &self.config, &self.workspace_id)
            .map_err(|e| e.message)?;
        if bytes.len() as u64 > left {
            return Err(format!("{path}: over the workspace's file quota"));
        }
        let id = crate::ids::new_id("file");
        tokio::fs::create_dir_all(&self.config.dir)
            .await
            .map_err(|e| e.to_string())?;
        // Written whole, synced, then renamed: a crash leaves a `.part` the sweep removes.
        let partial = partial_path(&self.config, &id);
        let written = async {
            let mut out = tokio::fs::File::create(&partial).await?;
            tokio::io::AsyncWriteExt::write_all(&mut out, &bytes).await?;
            out.sync_all().await?;
            tokio::fs::rename(&partial, path_of(&self.config, &id)).await
        };
        if let Err(err) = written.await {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err.to_string());
        }
        let filename = Path::new(path)
            .file_name()
            .map_or_else(|| "output".to_owned(), |n| n.to_string_lossy().into_owned());
        let meta = FileMeta {
            id: id.clone(),
            workspace_id: self.workspace_id.clone(),
            mime_type: mime_for(&filename, None),
            filename,
            size_bytes: bytes.len() as u64,
            created_at_ms: crate::ids::now_ms(),
            downloadable: true,
        };
        self.store.add_file(&meta).map_err(|e| e.to_string())?;
        Ok(id)
    }

    async fn load(&self, file_id: &str) -> Result<(String, Vec<u8>), String> {
        let meta = self
            .store
            .file(&self.workspace_id, file_id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("file {file_id} not found"))?;
        let bytes = read_limited(
            &path_of(&self.config, file_id),
            meta.size_bytes,
            MAX_FILE_BYTES,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok((meta.filename, bytes))
    }
}

/// Reads a file's bytes, refusing one larger than `limit` before reading anything.
pub async fn read_limited(path: &Path, size: u64, limit: u64) -> Result<Vec<u8>, ReadError> {
    if size > limit {
        return Err(ReadError::TooLarge { size, limit });
    }
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // The metadata could be stale; never read past the limit whatever the file holds.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .await?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the file has {size} bytes, more than the {limit} this request may still read")]
    TooLarge { size: u64, limit: u64 },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
