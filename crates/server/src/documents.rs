//! Documents in messages, made readable before a request reaches a model: base64 PDFs and
//! uploaded files (`file_id`) become page-by-page text, plain-text files become text
//! documents. What cannot be read (a corrupt PDF, an unknown or foreign `file_id`, a binary
//! file) is a 400 naming the block. Documents with `citations.enabled` are remembered so
//! the answer can cite them ([`cite`]).

use std::collections::HashMap;

use base64::Engine;
use futures::{Stream, StreamExt};
use missive_protocol::content::{ContentBlock, ContentBlockParam, DocumentSource};
use missive_protocol::messages::{MessageContent, MessagesRequest};
use missive_protocol::{ContentBlockDelta, ErrorType, StreamEvent};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::file_storage;
use crate::state::AppState;

/// A document the answer may cite, in the order documents appear in the request.
#[derive(Debug, Clone)]
pub struct Citable {
    pub index: usize,
    pub title: Option<String>,
    pub body: CitableBody,
}

#[derive(Debug, Clone)]
pub enum CitableBody {
    /// Plain text: cited by character range.
    Text(String),
    /// A PDF: cited by page range.
    Pages(Vec<String>),
    /// A web search result's snippet: cited by its URL (`web_search_result_location`).
    SearchResult { url: String, snippet: String },
}

/// Bytes of documents (decoded base64 and uploaded files) one request may carry. A file
/// larger than what is left is refused before it is read.
pub const MAX_DOCUMENT_BYTES: u64 = 32 * 1024 * 1024;

fn pages_source(pages: &[String]) -> DocumentSource {
    DocumentSource::Content {
        content: Value::Array(
            pages
                .iter()
                .enumerate()
                .map(|(i, text)| json!({"type": "text", "text": format!("[page {}]\n{text}", i + 1)}))
                .collect(),
        ),
    }
}

/// Resolves every document of `request` to text the model can read, and returns the
/// documents that asked to be cited.
pub async fn resolve(
    state: &AppState,
    workspace_id: &str,
    mut request: MessagesRequest,
) -> Result<(MessagesRequest, Vec<Citable>), ApiError> {
    let mut citable = Vec::new();
    let mut index = 0;
    let mut budget = MAX_DOCUMENT_BYTES;
    for (turn, message) in request.messages.iter_mut().enumerate() {
        let MessageContent::Blocks(blocks) = &mut message.content else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            let ContentBlockParam::Document {
                source,
                title,
                citations,
                ..
            } = block
            else {
                continue;
            };
            let at = format!("messages.{turn}.content.{j}.source");
            let body = read_source(state, workspace_id, source, &at, &mut budget).await?;
            let wants_citations = citations
                .as_ref()
                .and_then(|c| c.get("enabled"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(body) = body {
                if let CitableBody::Pages(pages) = &body {
                    *source = pages_source(pages);
                } else if let CitableBody::Text(text) = &body {
                    if !matches!(source, DocumentSource::Text { .. }) {
                        *source = DocumentSource::Text {
                            media_type: Some("text/plain".into()),
                            data: text.clone(),
                        };
                    }
                }
                if wants_citations {
                    citable.push(Citable {
                        index,
                        title: title.clone(),
                        body,
                    });
                }
            }
            index += 1;
        }
    }
    Ok((request, citable))
}

fn over_budget(at: &str, size: u64, budget: u64) -> ApiError {
    ApiError::new(
        ErrorType::RequestTooLarge,
        format!(
            "{at}: the document has {size} bytes, more than the {budget} left of the {MAX_DOCUMENT_BYTES} bytes of documents one request may carry"
        ),
    )
}

/// The document's text, or `None` for sources the model reads as they are. Takes what it
/// reads from `budget`.
async fn read_source(
    state: &AppState,
    workspace_id: &str,
    source: &DocumentSource,
    at: &str,
    budget: &mut u64,
) -> Result<Option<CitableBody>, ApiError> {
    match source {
        DocumentSource::Text { data, .. } => Ok(Some(CitableBody::Text(data.clone()))),
        DocumentSource::Base64 { media_type, data } => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| ApiError::invalid(format!("{at}.data: invalid base64: {e}")))?;
            let size = bytes.len() as u64;
            *budget = budget
                .checked_sub(size)
                .ok_or_else(|| over_budget(at, size, *budget))?;
            decode(bytes, media_type, at).await.map(Some)
        }
        DocumentSource::File { file_id } => {
            let no_files =
                || ApiError::invalid(format!("{at}.file_id: this server has no Files API"));
            let Some(store) = &state.store else {
                return Err(no_files());
            };
            let config = state.files.as_deref().ok_or_else(no_files)?;
            let meta = store.file(workspace_id, file_id)?.ok_or_else(|| {
                ApiError::invalid(format!("{at}.file_id: file {file_id} not found"))
            })?;
            let path = file_storage::path_of(config, file_id);
            let bytes = file_storage::read_limited(&path, meta.size_bytes, *budget)
                .await
                .map_err(|err| match err {
                    file_storage::ReadError::TooLarge { size, limit } => {
                        over_budget(&format!("{at}.file_id ({file_id})"), size, limit)
                    }
                    file_storage::ReadError::Io(err) => ApiError::internal(err),
                })?;
            *budget -= bytes.len() as u64;
            decode(bytes, &meta.mime_type, &format!("{at}.file_id ({file_id})"))
                .await
                .map(Some)
        }
        DocumentSource::Content { .. } | DocumentSource::Url { .. } => Ok(None),
    }
}

async fn decode(bytes: Vec<u8>, media_type: &str, at: &str) -> Result<CitableBody, ApiError> {
    if media_type == "application/pdf" {
        return missive_tools::pdf::read(bytes)
            .await
            .map(CitableBody::Pages)
            .map_err(|e| ApiError::invalid(format!("{at}: {e}")));
    }
    if media_type.starts_with("text/") || media_type == "application/json" {
        return String::from_utf8(bytes)
            .map(CitableBody::Text)
            .map_err(|_| ApiError::invalid(format!("{at}: the document is not UTF-8 text")));
    }
    Err(ApiError::invalid(format!(
        "{at}: `{media_type}` cannot be read as a document; send a PDF or plain text"
    )))
}

/// Words of a passage, lowercased, for overlap scoring.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
        .map(str::to_lowercase)
        .collect()
}

/// Sentence-sized spans of `text` as byte ranges.
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if matches!(c, '.' | '!' | '?' | '\n') {
            let end = i + c.len_utf8();
            if text[start..end].trim().len() > 1 {
                spans.push((start, end));
            }
            start = end;
        }
    }
    if text[start..].trim().len() > 1 {
        spans.push((start, text.len()));
    }
    spans
}

/// The citation for one text block of an answer: the document sentence that shares the
/// most words with it (at least two), quoted exactly from the document, by character range
/// (text) or page (PDF). The `cited_text` is always a verbatim substring of what the request
/// sent; a block with nothing to cite gets `None`.
pub fn citation_for(text: &str, documents: &[Citable]) -> Option<Value> {
    let answer: std::collections::HashSet<String> = words(text).into_iter().collect();
    let mut best: Option<(usize, Value)> = None;
    for doc in documents {
        let pages: Vec<(Option<usize>, &str)> = match &doc.body {
            CitableBody::Text(t) => vec![(None, t.as_str())],
            CitableBody::SearchResult { snippet, .. } => vec![(None, snippet.as_str())],
            CitableBody::Pages(p) => p
                .iter()
                .enumerate()
                .map(|(i, t)| (Some(i), t.as_str()))
                .collect(),
        };
        for (page, body) in pages {
            for (start, end) in sentences(body) {
                let quote = &body[start..end];
                let score = words(quote).iter().filter(|w| answer.contains(*w)).count();
                if score < 2 || best.as_ref().is_some_and(|(s, _)| *s >= score) {
                    continue;
                }
                let citation = match (page, &doc.body) {
                    // The API quotes at most 150 characters of a result.
                    (_, CitableBody::SearchResult { url, .. }) => json!({
                        "type": "web_search_result_location",
                        "cited_text": quote.chars().take(150).collect::<String>(),
                        "url": url,
                        "title": doc.title,
                        "encrypted_index": base64::engine::general_purpose::STANDARD
                            .encode(doc.index.to_string()),
                    }),
                    (None, _) => json!({
                        "type": "char_location",
                        "cited_text": quote,
                        "document_index": doc.index,
                        "document_title": doc.title,
                        "start_char_index": body[..start].chars().count(),
                        "end_char_index": body[..end].chars().count(),
                    }),
                    (Some(p), _) => json!({
                        "type": "page_location",
                        "cited_text": quote,
                        "document_index": doc.index,
                        "document_title": doc.title,
                        "start_page_number": p + 1,
                        "end_page_number": p + 2,
                    }),
                };
                best = Some((score, citation));
            }
        }
    }
    best.map(|(_, citation)| citation)
}

/// Adds a `citations_delta` before the end of each text block that has something to cite,
/// as the Claude API streams citations; the non-streaming `Message` is folded from the same
/// events. With `server_results`, what the server's tools bring back during the reply
/// becomes citable as it arrives: web search results, and fetched pages whose document
/// enables citations (numbered after the request's documents). Without anything to cite,
/// the events pass untouched: no answer text is kept.
pub fn cite_stream(
    events: impl Stream<Item = StreamEvent> + Send + 'static,
    mut documents: Vec<Citable>,
    server_results: bool,
) -> futures::stream::BoxStream<'static, StreamEvent> {
    if documents.is_empty() && !server_results {
        return events.boxed();
    }
    let mut texts: HashMap<usize, String> = HashMap::new();
    let mut results = 0;
    let mut next_document = documents.iter().map(|d| d.index + 1).max().unwrap_or(0);
    events
        .flat_map(move |event| {
            let mut out = Vec::with_capacity(2);
            match &event {
                StreamEvent::ContentBlockStart {
                    content_block: ContentBlock::WebSearchToolResult { content, .. },
                    ..
                } => {
                    for hit in content.as_array().into_iter().flatten() {
                        let snippet = hit["encrypted_content"]
                            .as_str()
                            .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                            .and_then(|b| String::from_utf8(b).ok())
                            .unwrap_or_default();
                        documents.push(Citable {
                            index: results,
                            title: hit["title"].as_str().map(str::to_owned),
                            body: CitableBody::SearchResult {
                                url: hit["url"].as_str().unwrap_or_default().to_owned(),
                                snippet,
                            },
                        });
                        results += 1;
                    }
                }
                StreamEvent::ContentBlockStart {
                    content_block: ContentBlock::WebFetchToolResult { content, .. },
                    ..
                } => {
                    let document = &content["content"];
                    if document["citations"]["enabled"] == true {
                        if let Some(text) = document["source"]["data"].as_str() {
                            documents.push(Citable {
                                index: next_document,
                                title: document["title"].as_str().map(str::to_owned),
                                body: CitableBody::Text(text.to_owned()),
                            });
                            next_document += 1;
                        }
                    }
                }
                StreamEvent::ContentBlockDelta {
                    index,
                    delta: ContentBlockDelta::TextDelta { text },
                } => texts.entry(*index).or_default().push_str(text),
                StreamEvent::ContentBlockStop { index } => {
                    if let Some(citation) = texts
                        .remove(index)
                        .and_then(|text| citation_for(&text, &documents))
                    {
                        out.push(StreamEvent::ContentBlockDelta {
                            index: *index,
                            delta: ContentBlockDelta::CitationsDelta { citation },
                        });
                    }
                }
                _ => {}
            }
            out.push(event);
            futures::stream::iter(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_quote_the_document_exactly_and_point_at_it() {
        let doc = "Missive is a server. The grass is green in spring. Rivers run to the sea.";
        let docs = [Citable {
            index: 0,
            title: Some("Notes".into()),
            body: CitableBody::Text(doc.into()),
        }];
        let c = citation_for("In spring the grass is green.", &docs).unwrap();
        assert_eq!(c["type"], "char_location");
        let start = c["start_char_index"].as_u64().unwrap() as usize;
        let end = c["end_char_index"].as_u64().unwrap() as usize;
        let quoted: String = doc.chars().skip(start).take(end - start).collect();
        assert_eq!(quoted, c["cited_text"].as_str().unwrap());
        assert!(quoted.contains("grass is green"));
    }

    #[test]
    fn pages_are_cited_by_page_and_unrelated_answers_cite_nothing() {
        let pages = vec![
            "Chapter one is about apples.".to_owned(),
            "Chapter two covers the Zephyr engine design.".to_owned(),
        ];
        let docs = [Citable {
            index: 1,
            title: None,
            body: CitableBody::Pages(pages),
        }];
        let c = citation_for("The Zephyr engine design is in chapter two.", &docs).unwrap();
        assert_eq!(c["type"], "page_location");
        assert_eq!(c["start_page_number"], 2);
        assert_eq!(c["end_page_number"], 3);
        assert_eq!(c["document_index"], 1);
        assert!(citation_for("Hello.", &docs).is_none());
    }

    #[test]
    fn garbage_is_not_a_pdf() {
        assert!(missive_tools::pdf::pages(b"%PDF-1.4 this is not really a pdf").is_err());
        assert!(missive_tools::pdf::pages(b"hello").is_err());
    }
}
