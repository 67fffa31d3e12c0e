//! The Files API: upload (multipart, streamed to disk, never held whole in memory), list
//! (the beta `before_id`/`after_id` page and the GA `page`/`next_page` cursor in one
//! answer), metadata, content, delete. Files belong to the uploading key's workspace; any
//! other workspace gets 404.

use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use missive_protocol::ErrorType;
use missive_store::FileMeta;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::routes::admin::params::{rfc3339_ms, Params};
use crate::state::AppState;

/// The Claude API's upload cap.
pub const MAX_FILE_BYTES: u64 = 500 * 1024 * 1024;

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

fn store(state: &AppState) -> Result<&std::sync::Arc<dyn missive_store::Store>, ApiError> {
    state.store.as_ref().ok_or_else(|| {
        ApiError::not_found("The Files API needs a store; this server runs without one")
    })
}

fn files_dir(state: &AppState) -> Result<&std::path::Path, ApiError> {
    state
        .files
        .as_ref()
        .map(|f| f.dir.as_path())
        .ok_or_else(|| ApiError::not_found("The Files API is not enabled on this server"))
}

/// A file of this workspace, 404 otherwise.
pub fn find(state: &AppState, principal: &Principal, id: &str) -> Result<FileMeta, ApiError> {
    store(state)?
        .file(&principal.workspace_id, id)?
        .ok_or_else(|| ApiError::not_found(format!("file {id} not found")))
}

/// Where a file's bytes are.
pub fn path_of(state: &AppState, id: &str) -> Result<std::path::PathBuf, ApiError> {
    Ok(files_dir(state)?.join(id))
}

fn mime_for(filename: &str, given: Option<&str>) -> String {
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

pub async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    mut multipart: Multipart,
) -> Result<Json<FileView>, ApiError> {
    let dir = files_dir(&state)?.to_owned();
    let downloadable = state.files.as_ref().is_some_and(|f| f.downloadable_uploads);
    let store = store(&state)?.clone();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| ApiError::invalid(format!("invalid multipart body: {e}")))?
    {
        if field.name() != Some("file") {
            continue;
        }
        let filename = field.file_name().unwrap_or("upload").to_owned();
        let mime_type = mime_for(&filename, field.content_type());
        let id = crate::ids::new_id("file");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(ApiError::internal)?;
        let partial = dir.join(format!("{id}.part"));
        let mut out = tokio::fs::File::create(&partial)
            .await
            .map_err(ApiError::internal)?;
        let mut size: u64 = 0;
        let written: Result<(), ApiError> = async {
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| ApiError::invalid(format!("invalid multipart body: {e}")))?
            {
                size += chunk.len() as u64;
                if size > MAX_FILE_BYTES {
                    return Err(ApiError::new(
                        ErrorType::RequestTooLarge,
                        format!("file: larger than the {MAX_FILE_BYTES}-byte limit"),
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
        tokio::fs::rename(&partial, dir.join(&id))
            .await
            .map_err(ApiError::internal)?;
        let meta = FileMeta {
            id,
            workspace_id: principal.workspace_id.clone(),
            filename,
            mime_type,
            size_bytes: size,
            created_at_ms: crate::ids::now_ms(),
            downloadable,
        };
        store.add_file(&meta)?;
        return Ok(Json(view(meta)));
    }
    Err(ApiError::invalid(
        "file: a multipart field named `file` is required",
    ))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    params: Params,
) -> Result<Json<serde_json::Value>, ApiError> {
    let files = store(&state)?.list_files(&principal.workspace_id)?;
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
    let file = tokio::fs::File::open(path_of(&state, &id)?)
        .await
        .map_err(ApiError::internal)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    Ok((
        [
            (CONTENT_TYPE, meta.mime_type.clone()),
            (CONTENT_LENGTH, meta.size_bytes.to_string()),
            (
                CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}\"",
                    meta.filename.replace('"', "")
                ),
            ),
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
    store(&state)?.delete_file(&principal.workspace_id, &id)?;
    let _ = tokio::fs::remove_file(path_of(&state, &id)?).await;
    Ok(Json(json!({"id": id, "type": "file_deleted"})))
}
