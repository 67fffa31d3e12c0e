//! Documents in messages (at the top of a turn and inside tool results), made readable
//! before a request reaches a model: base64 PDFs and uploaded files (`file_id`) become
//! page-by-page text, plain-text files become text documents. What cannot be read (a
//! corrupt PDF, an unknown or foreign `file_id`, a binary file) is a 400 naming the block.
//! Documents and search results with `citations.enabled` are remembered so the answer can
//! cite them ([`cite_stream`]). A Claude API upstream reads and cites documents itself: it
//! is sent only the bytes of uploaded files, which it cannot reach.

use std::collections::HashMap;

use base64::Engine;
use futures::{Stream, StreamExt};
use missive_protocol::content::{
    ContentBlock, ContentBlockParam, DocumentSource, ToolResultContent,
};
use missive_protocol::messages::{MessageContent, MessagesRequest};
use missive_protocol::{ContentBlockDelta, ErrorType, StreamEvent};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::file_storage;
use crate::state::AppState;

/// A document or search result the answer may cite.
#[derive(Debug, Clone)]
pub struct Citable {
    /// `document_index`, `search_result_index` or a web search result's place: each kind
    /// is counted on its own, in the order the blocks stand in the request.
    pub index: usize,
    pub title: Option<String>,
    /// The Files API file the document was read from.
    pub file_id: Option<String>,
    pub body: CitableBody,
}

impl Citable {
    /// Counted by `document_index` (not a search result).
    fn is_document(&self) -> bool {
        matches!(
            self.body,
            CitableBody::Text(_) | CitableBody::Pages(_) | CitableBody::Blocks(_)
        )
    }
}

#[derive(Debug, Clone)]
pub enum CitableBody {
    /// Plain text: cited by character range (`char_location`).
    Text(String),
    /// A PDF: cited by page range (`page_location`).
    Pages(Vec<String>),
    /// A document of content blocks: cited by block (`content_block_location`). Each text
    /// comes with its place in the source's `content`, where images count but hold no text.
    Blocks(Vec<(usize, String)>),
    /// A search result of the request: cited by block (`search_result_location`).
    SearchResult { source: String, blocks: Vec<String> },
    /// A web search result's snippet: cited by its URL (`web_search_result_location`).
    WebSearchResult { url: String, snippet: String },
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

fn citations_enabled(citations: Option<&Value>) -> bool {
    citations
        .and_then(|c| c.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// Where a request's documents are read, and how they are counted while it is walked.
struct Reader<'a> {
    state: &'a AppState,
    workspace_id: &'a str,
    /// The model is the Claude API's: it reads and cites documents itself.
    upstream_reads: bool,
    budget: u64,
    documents: usize,
    search_results: usize,
    citable: Vec<Citable>,
}

impl Reader<'_> {
    async fn block(&mut self, block: &mut ContentBlockParam, at: &str) -> Result<(), ApiError> {
        match block {
            ContentBlockParam::Document {
                source,
                title,
                citations,
                ..
            } => {
                let cited = citations_enabled(citations.as_ref());
                self.document(source, title.as_deref(), cited, at).await
            }
            ContentBlockParam::SearchResult { .. } => {
                self.search_result(block);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn document(
        &mut self,
        source: &mut DocumentSource,
        title: Option<&str>,
        cited: bool,
        at: &str,
    ) -> Result<(), ApiError> {
        let index = self.documents;
        self.documents += 1;
        let at = format!("{at}.source");
        if self.upstream_reads {
            // The upstream cannot read this server's files: they go as their bytes.
            if let DocumentSource::File { file_id } = source {
                *source = self.inline_file(&file_id.clone(), &at).await?;
            }
            return Ok(());
        }
        let file_id = match source {
            DocumentSource::File { file_id } => Some(file_id.clone()),
            _ => None,
        };
        let Some(body) = self.read_source(source, &at).await? else {
            return Ok(());
        };
        match &body {
            CitableBody::Pages(pages) => *source = pages_source(pages),
            CitableBody::Text(text) if !matches!(source, DocumentSource::Text { .. }) => {
                *source = DocumentSource::Text {
                    media_type: Some("text/plain".into()),
                    data: text.clone(),
                };
            }
            _ => {}
        }
        if cited {
            self.citable.push(Citable {
                index,
                title: title.map(str::to_owned),
                file_id,
                body,
            });
        }
        Ok(())
    }

    fn search_result(&mut self, block: &ContentBlockParam) {
        let ContentBlockParam::SearchResult {
            source,
            title,
            citations,
            ..
        } = block
        else {
            return;
        };
        let index = self.search_results;
        self.search_results += 1;
        if self.upstream_reads || !citations_enabled(citations.as_ref()) {
            return;
        }
        let blocks = block.search_result_texts().unwrap_or_default();
        self.citable.push(Citable {
            index,
            title: Some(title.clone()),
            file_id: None,
            body: CitableBody::SearchResult {
                source: source.clone(),
                blocks: blocks.into_iter().map(str::to_owned).collect(),
            },
        });
    }

    /// A Files API document as a source the Claude API reads: a PDF as base64, text as
    /// text.
    async fn inline_file(&mut self, file_id: &str, at: &str) -> Result<DocumentSource, ApiError> {
        let (bytes, media_type) = self.file_bytes(file_id, at).await?;
        if media_type == "application/pdf" {
            return Ok(DocumentSource::Base64 {
                media_type,
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
            });
        }
        Ok(DocumentSource::Text {
            media_type: Some("text/plain".into()),
            data: text(bytes, &media_type, &format!("{at}.file_id ({file_id})"))?,
        })
    }

    /// The document's text, or `None` for sources the model reads as they are. Takes what
    /// it reads from the budget.
    async fn read_source(
        &mut self,
        source: &DocumentSource,
        at: &str,
    ) -> Result<Option<CitableBody>, ApiError> {
        match source {
            DocumentSource::Text { data, .. } => Ok(Some(CitableBody::Text(data.clone()))),
            DocumentSource::Content { content } => Ok(Some(content_blocks(content))),
            DocumentSource::Base64 { media_type, data } => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(data.trim())
                    .map_err(|e| ApiError::invalid(format!("{at}.data: invalid base64: {e}")))?;
                let size = bytes.len() as u64;
                self.budget = self
                    .budget
                    .checked_sub(size)
                    .ok_or_else(|| over_budget(at, size, self.budget))?;
                decode(bytes, media_type, at).await.map(Some)
            }
            DocumentSource::File { file_id } => {
                let (bytes, media_type) = self.file_bytes(file_id, at).await?;
                decode(bytes, &media_type, &format!("{at}.file_id ({file_id})"))
                    .await
                    .map(Some)
            }
            DocumentSource::Url { .. } => Ok(None),
        }
    }

    /// An uploaded file's bytes and media type, taken from the budget.
    async fn file_bytes(&mut self, file_id: &str, at: &str) -> Result<(Vec<u8>, String), ApiError> {
        let no_files = || ApiError::invalid(format!("{at}.file_id: this server has no Files API"));
        let Some(store) = &self.state.store else {
            return Err(no_files());
        };
        let config = self.state.files.as_deref().ok_or_else(no_files)?;
        let meta = store
            .file(self.workspace_id, file_id)?
            .ok_or_else(|| ApiError::invalid(format!("{at}.file_id: file {file_id} not found")))?;
        let path = file_storage::path_of(config, file_id);
        let bytes = file_storage::read_limited(&path, meta.size_bytes, self.budget)
            .await
            .map_err(|err| match err {
                file_storage::ReadError::TooLarge { size, limit } => {
                    over_budget(&format!("{at}.file_id ({file_id})"), size, limit)
                }
                file_storage::ReadError::Io(err) => ApiError::internal(err),
            })?;
        self.budget -= bytes.len() as u64;
        Ok((bytes, meta.mime_type))
    }
}

fn over_budget(at: &str, size: u64, budget: u64) -> ApiError {
    ApiError::new(
        ErrorType::RequestTooLarge,
        format!(
            "{at}: the document has {size} bytes, more than the {budget} left of the {MAX_DOCUMENT_BYTES} bytes of documents one request may carry"
        ),
    )
}

/// Resolves every document of `request` to text the model can read, and returns the
/// documents and search results that asked to be cited, in the order they stand: at the
/// top of each turn and inside its tool results. With `upstream_reads` (a Claude API
/// upstream, which reads and cites documents itself) only uploaded files are inlined, and
/// nothing is cited here.
pub async fn resolve(
    state: &AppState,
    workspace_id: &str,
    upstream_reads: bool,
    mut request: MessagesRequest,
) -> Result<(MessagesRequest, Vec<Citable>), ApiError> {
    let mut reader = Reader {
        state,
        workspace_id,
        upstream_reads,
        budget: MAX_DOCUMENT_BYTES,
        documents: 0,
        search_results: 0,
        citable: Vec::new(),
    };
    for (turn, message) in request.messages.iter_mut().enumerate() {
        let MessageContent::Blocks(blocks) = &mut message.content else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            let at = format!("messages.{turn}.content.{j}");
            if let ContentBlockParam::ToolResult {
                content: Some(ToolResultContent::Blocks(inner)),
                ..
            } = block
            {
                for (k, inner) in inner.iter_mut().enumerate() {
                    reader.block(inner, &format!("{at}.content.{k}")).await?;
                }
            } else {
                reader.block(block, &at).await?;
            }
        }
    }
    Ok((request, reader.citable))
}

/// A `content` document source's text blocks, each with its place in the source: a
/// string is one block.
fn content_blocks(content: &Value) -> CitableBody {
    CitableBody::Blocks(match content {
        Value::String(text) => vec![(0, text.clone())],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| Some((i, item.get("text")?.as_str()?.to_owned())))
            .collect(),
        _ => Vec::new(),
    })
}

async fn decode(bytes: Vec<u8>, media_type: &str, at: &str) -> Result<CitableBody, ApiError> {
    if media_type == "application/pdf" {
        return missive_tools::pdf::read(bytes)
            .await
            .map(CitableBody::Pages)
            .map_err(|e| ApiError::invalid(format!("{at}: {e}")));
    }
    text(bytes, media_type, at).map(CitableBody::Text)
}

/// A text file's contents; a 400 for any other kind of file.
fn text(bytes: Vec<u8>, media_type: &str, at: &str) -> Result<String, ApiError> {
    if media_type.starts_with("text/") || media_type == "application/json" {
        return String::from_utf8(bytes)
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

/// The citation for one text block of an answer: the passage of a cited document or search
/// result that shares the most words with it (at least two), quoted exactly as the request
/// sent it. A passage is a sentence of a text document, PDF page or web search snippet,
/// and a whole block of a content document or search result (the API's smallest citable
/// unit there). A block with nothing to cite gets `None`.
pub fn citation_for(text: &str, documents: &[Citable]) -> Option<Value> {
    let answer: std::collections::HashSet<String> = words(text).into_iter().collect();
    let mut best: Option<(usize, Value)> = None;
    let mut offer = |quote: &str, citation: &dyn Fn() -> Value| {
        let score = words(quote).iter().filter(|w| answer.contains(*w)).count();
        if score >= 2 && best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((score, citation()));
        }
    };
    for doc in documents {
        match &doc.body {
            CitableBody::Text(body) => {
                for (start, end) in sentences(body) {
                    let quote = &body[start..end];
                    offer(quote, &|| {
                        json!({
                            "type": "char_location",
                            "cited_text": quote,
                            "document_index": doc.index,
                            "document_title": doc.title,
                            "start_char_index": body[..start].chars().count(),
                            "end_char_index": body[..end].chars().count(),
                            "file_id": doc.file_id,
                        })
                    });
                }
            }
            CitableBody::Pages(pages) => {
                for (page, body) in pages.iter().enumerate() {
                    for (start, end) in sentences(body) {
                        let quote = &body[start..end];
                        offer(quote, &|| {
                            json!({
                                "type": "page_location",
                                "cited_text": quote,
                                "document_index": doc.index,
                                "document_title": doc.title,
                                "start_page_number": page + 1,
                                "end_page_number": page + 2,
                                "file_id": doc.file_id,
                            })
                        });
                    }
                }
            }
            CitableBody::Blocks(blocks) => {
                for (at, quote) in blocks {
                    offer(quote, &|| {
                        json!({
                            "type": "content_block_location",
                            "cited_text": quote,
                            "document_index": doc.index,
                            "document_title": doc.title,
                            "start_block_index": at,
                            "end_block_index": at + 1,
                            "file_id": doc.file_id,
                        })
                    });
                }
            }
            CitableBody::SearchResult { source, blocks } => {
                for (at, quote) in blocks.iter().enumerate() {
                    offer(quote, &|| {
                        json!({
                            "type": "search_result_location",
                            "cited_text": quote,
                            "search_result_index": doc.index,
                            "source": source,
                            "title": doc.title,
                            "start_block_index": at,
                            "end_block_index": at + 1,
                        })
                    });
                }
            }
            CitableBody::WebSearchResult { url, snippet } => {
                for (start, end) in sentences(snippet) {
                    let quote = &snippet[start..end];
                    // The API quotes at most 150 characters of a result.
                    offer(quote, &|| {
                        json!({
                            "type": "web_search_result_location",
                            "cited_text": quote.chars().take(150).collect::<String>(),
                            "url": url,
                            "title": doc.title,
                            "encrypted_index": base64::engine::general_purpose::STANDARD
                                .encode(doc.index.to_string()),
                        })
                    });
                }
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
    let mut next_document = documents
        .iter()
        .filter(|d| d.is_document())
        .map(|d| d.index + 1)
        .max()
        .unwrap_or(0);
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
                            file_id: None,
                            body: CitableBody::WebSearchResult {
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
                                file_id: None,
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
            file_id: None,
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
            file_id: None,
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
    fn search_results_and_content_documents_are_cited_by_whole_block() {
        let docs = [
            Citable {
                index: 0,
                title: Some("Guide".into()),
                file_id: None,
                body: CitableBody::Blocks(vec![
                    (0, "Install with apt.".into()),
                    // Block 1 was an image: it holds no text but keeps its place.
                    (
                        2,
                        "The Zephyr pump runs on solar power. It needs no fuel.".into(),
                    ),
                ]),
            },
            Citable {
                index: 1,
                title: Some("Pump notes".into()),
                file_id: None,
                body: CitableBody::SearchResult {
                    source: "https://kb.example/pumps".into(),
                    blocks: vec![
                        "Pumps are serviced yearly.".into(),
                        "The Zephyr pump must be flushed every 300 hours of running.".into(),
                    ],
                },
            },
        ];
        let c = citation_for("Flush the Zephyr pump every 300 hours.", &docs).unwrap();
        assert_eq!(c["type"], "search_result_location");
        assert_eq!(c["search_result_index"], 1);
        assert_eq!(c["source"], "https://kb.example/pumps");
        assert_eq!(c["title"], "Pump notes");
        assert_eq!(
            (c["start_block_index"].clone(), c["end_block_index"].clone()),
            (1.into(), 2.into())
        );
        // The whole block, never a piece of it.
        assert_eq!(
            c["cited_text"],
            "The Zephyr pump must be flushed every 300 hours of running."
        );

        let c = citation_for("The Zephyr pump runs on solar power.", &docs).unwrap();
        assert_eq!(c["type"], "content_block_location");
        assert_eq!(c["document_index"], 0);
        assert_eq!(
            (c["start_block_index"].clone(), c["end_block_index"].clone()),
            (2.into(), 3.into())
        );
        assert_eq!(
            c["cited_text"],
            "The Zephyr pump runs on solar power. It needs no fuel."
        );
    }

    #[test]
    fn a_content_source_keeps_each_blocks_place() {
        let content = json!([
            {"type": "text", "text": "First."},
            {"type": "image", "source": {"type": "url", "url": "https://x.example/a.png"}},
            {"type": "text", "text": "Third."},
        ]);
        let CitableBody::Blocks(blocks) = content_blocks(&content) else {
            panic!("not blocks");
        };
        assert_eq!(
            blocks,
            vec![(0, "First.".to_owned()), (2, "Third.".to_owned())]
        );
        let CitableBody::Blocks(one) = content_blocks(&json!("All of it.")) else {
            panic!("not blocks");
        };
        assert_eq!(one, vec![(0, "All of it.".to_owned())]);
    }

    #[test]
    fn garbage_is_not_a_pdf() {
        assert!(missive_tools::pdf::pages(b"%PDF-1.4 this is not really a pdf").is_err());
        assert!(missive_tools::pdf::pages(b"hello").is_err());
    }
}
