//! The Files API: upload (multipart, streamed to disk, never held whole in memory), list
//! (the beta `before_id`/`after_id` page and the GA `page`/`next_page` cursor in one
//! answer), metadata, content, delete. Files belong to the uploading key's workspace; any
//! other workspace gets 404.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::header::{
    CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use missive_protocol::ErrorType;
use missive_store::FileMeta;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::file_storage::{self, MAX_FILE_BYTES};
use crate::params::{rfc3339_ms, Params};
use crate::state::AppState;

#[derive(Serialize)]
pub struct FileView {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    filename: String,
    mime_type: String,
    size_bytes: u64,
    created_at: String,
    downloadable: bool,
    expires_at: Option<String>,
}

fn view(f: FileMeta) -> FileView {
    FileView {
        id: f.id,
        kind: "file",
        filename: f.filename,
        mime_type: f.mime_type,
        size_bytes: f.size_bytes,
        created_at: rfc3339_ms(f.created_at_ms),
        downloadable: f.downloadable,
        expires_at: None,
    }
}

/// A file of this workspace, 404 otherwise.
fn find(state: &AppState, principal: &Principal, id: &str) -> Result<FileMeta, ApiError> {
    file_storage::find(state, &principal.workspace_id, id)?
        .ok_or_else(|| ApiError::not_found(format!("file {id} not found")))
}

/// Bytes of multipart framing (preamble, part headers) allowed between parts' data: a
/// body that never reaches a part's content is refused after this much, not buffered.
const MAX_FRAMING_BYTES: usize = 64 * 1024;

pub async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request: axum::extract::Request,
) -> Result<Json<FileView>, ApiError> {
    let config = file_storage::config(&state)?.clone();
    let store = file_storage::store(&state)?.clone();
    let allowance = file_storage::upload_allowance(&state, &principal.workspace_id)?;
    let boundary = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok())
        .ok_or_else(|| {
            ApiError::invalid("file: the body must be multipart/form-data with a boundary")
        })?;
    let framing = FramingBudget::default();
    let body = framing.watch(request.into_body().into_data_stream());
    let mut multipart = multer::Multipart::new(body, boundary);
    loop {
        framing.between_parts();
        let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? else {
            break;
        };
        framing.in_part();
        if field.name() != Some("file") {
            // Other fields are read past, and only so far: they count as framing.
            let mut skipped = 0;
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                skipped += chunk.len();
                if skipped > MAX_FRAMING_BYTES {
                    return Err(ApiError::invalid(format!(
                        "{}: fields other than `file` may hold at most {MAX_FRAMING_BYTES} bytes",
                        field.name().unwrap_or("multipart field")
                    )));
                }
            }
            continue;
        }
        let filename = field.file_name().unwrap_or("upload").to_owned();
        let mime_type = file_storage::mime_for(&filename, field.content_type().map(|m| m.as_ref()));
        let id = crate::ids::new_id("file");
        tokio::fs::create_dir_all(&config.dir)
            .await
            .map_err(ApiError::internal)?;
        let partial = file_storage::partial_path(&config, &id);
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(ApiError::internal)?;
        let mut size: u64 = 0;
        let written: Result<(), ApiError> = async {
            while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                size += chunk.len() as u64;
                if size > allowance {
                    return Err(ApiError::new(
                        ErrorType::RequestTooLarge,
                        format!(
                            "file: larger than the {allowance} bytes this workspace may still upload (at most {MAX_FILE_BYTES} per file)"
                        ),
                    ));
                }
                out.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            out.flush().await.map_err(ApiError::internal)?;
            out.sync_all().await.map_err(ApiError::internal)?;
            Ok(())
        }
        .await;
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err);
        }
        tokio::fs::rename(&partial, file_storage::path_of(&config, &id))
            .await
            .map_err(ApiError::internal)?;
        let meta = FileMeta {
            id,
            workspace_id: principal.workspace_id.clone(),
            filename,
            mime_type,
            size_bytes: size,
            created_at_ms: crate::ids::now_ms(),
            downloadable: config.downloadable_uploads,
        };
        store.add_file(&meta)?;
        return Ok(Json(view(meta)));
    }
    Err(ApiError::invalid(
        "file: a multipart field named `file` is required",
    ))
}

fn multipart_error(err: multer::Error) -> ApiError {
    match std::error::Error::source(&err) {
        Some(cause) => ApiError::invalid(format!("invalid multipart body: {err}: {cause}")),
        None => ApiError::invalid(format!("invalid multipart body: {err}")),
    }
}

/// Counts the body's bytes read while no part's content is being read, and ends the body
/// with an error once they pass [`MAX_FRAMING_BYTES`].
#[derive(Clone, Default)]
struct FramingBudget(Arc<FramingState>);

#[derive(Default)]
struct FramingState {
    in_part: AtomicBool,
    framing: AtomicUsize,
}

impl FramingBudget {
    fn between_parts(&self) {
        self.0.in_part.store(false, Ordering::Relaxed);
        self.0.framing.store(0, Ordering::Relaxed);
    }

    fn in_part(&self) {
        self.0.in_part.store(true, Ordering::Relaxed);
    }

    fn watch<S, E>(
        &self,
        body: S,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
    where
        S: futures::Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let budget = self.clone();
        body.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            if !budget.0.in_part.load(Ordering::Relaxed) {
                // Checked before this chunk counts: a chunk may carry a part's headers and
                // the start of its content, so what is buffered is at most the budget and
                // one chunk.
                let before = budget.0.framing.fetch_add(chunk.len(), Ordering::Relaxed);
                if before > MAX_FRAMING_BYTES {
                    return Err(std::io::Error::other(format!(
                        "more than {MAX_FRAMING_BYTES} bytes of multipart framing before a part's content"
                    )));
                }
            }
            Ok(chunk)
        })
    }
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let files = file_storage::store(&state)?.list_files(&principal.workspace_id)?;
    let ids = params.many("ids");
    if !ids.is_empty() {
        let data: Vec<FileView> = files
            .into_iter()
            .filter(|f| ids.contains(&f.id))
            .map(view)
            .collect();
        return Ok(Json(
            json!({"data": data, "has_more": false, "next_page": null,
            "first_id": data.first().map(|f| f.id.clone()), "last_id": data.last().map(|f| f.id.clone())}),
        ));
    }
    let limit = params.int("limit", 1, 1000, 20)?;
    // The GA cursor is the last id of the previous page.
    let after = params.one("after_id").or(params.one("page"));
    let views: Vec<FileView> = files.into_iter().map(view).collect();
    let page = missive_protocol::models::Page::paginate(
        views,
        |f| f.id.as_str(),
        limit,
        after,
        params.one("before_id"),
    );
    let next_page = page.has_more.then(|| page.last_id.clone()).flatten();
    Ok(Json(json!({
        "data": page.data,
        "has_more": page.has_more,
        "first_id": page.first_id,
        "last_id": page.last_id,
        "next_page": next_page,
    })))
}

pub async fn retrieve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<FileView>, ApiError> {
    Ok(Json(view(find(&state, &principal, &id)?)))
}

pub async fn content(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let meta = find(&state, &principal, &id)?;
    if !meta.downloadable {
        return Err(ApiError::invalid(format!(
            "file {id} is not downloadable: uploaded files can be used in messages but not downloaded"
        )));
    }
    let config = file_storage::config(&state)?;
    let file = tokio::fs::File::open(file_storage::path_of(config, &id))
        .await
        .map_err(ApiError::internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (CONTENT_TYPE, meta.mime_type.clone()),
            (CONTENT_LENGTH, meta.size_bytes.to_string()),
            (CONTENT_DISPOSITION, content_disposition(&meta.filename)),
            (X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    find(&state, &principal, &id)?;
    file_storage::store(&state)?.delete_file(&principal.workspace_id, &id)?;
    let path = file_storage::path_of(file_storage::config(&state)?, &id);
    let _ = tokio::fs::remove_file(path).await;
    Ok(Json(json!({"id": id, "type": "file_deleted"})))
}

/// `attachment` with the name as a quoted ASCII fallback (quotes, backslashes and control
/// characters replaced) and, when it is not plain ASCII, RFC 5987's UTF-8 `filename*`.
fn content_disposition(filename: &str) -> String {
    let fallback: String = filename
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            c if c.is_ascii_control() || !c.is_ascii() => '_',
            c => c,
        })
        .collect();
    if filename.is_ascii() && !filename.chars().any(|c| c.is_ascii_control()) {
        return format!("attachment; filename=\"{fallback}\"");
    }
    let encoded: String = filename
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect();
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn download_names_cannot_break_out_of_the_header() {
        assert_eq!(
            content_disposition("a\"b\\c.txt"),
            "attachment; filename=\"a_b_c.txt\""
        );
        let header = content_disposition("r\u{e9}sum\u{e9}\r\n.pdf");
        assert!(!header.contains('\r') && !header.contains('\n'), "{header}");
        assert!(
            header.ends_with("filename*=UTF-8''r%C3%A9sum%C3%A9%0D%0A.pdf"),
            "{header}"
        );
    }
}
