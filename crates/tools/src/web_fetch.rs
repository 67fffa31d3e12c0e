//! `web_fetch`: the model names a URL, the server fetches it ([`crate::fetch`]) and hands
//! back its text: HTML as readable text, PDFs through the PDF reader, plain text as it is.
//! Only a URL that already appears in the conversation may be fetched, as on the Claude
//! API: a model steered by injected text cannot send the conversation to an address of its
//! own making.

use missive_protocol::content::ContentBlock;
use missive_protocol::usage::ServerToolUsage;
use serde_json::{json, Value};

use crate::fetch::{FetchError, Fetched};
use crate::spec::ServerTool;
use crate::{Outcome, Toolbox};

/// Longest URL the tool takes.
const MAX_URL_CHARS: usize = 2048;

/// Runs one `web_fetch` call. `conversation` is every text the model has read so far.
pub async fn run(
    toolbox: &Toolbox,
    tool: &ServerTool,
    input: &Value,
    conversation: &str,
    allowlist: Option<&[String]>,
    max_content_tokens: Option<u32>,
    tool_use_id: &str,
) -> Outcome {
    // Only a fetch that brought something back counts, as on the Claude API.
    let error = |code: &str| Outcome {
        result: ContentBlock::WebFetchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({"type": "web_fetch_tool_result_error", "error_code": code}),
        },
        for_model: format!("The fetch failed: {code}"),
        is_error: true,
        usage: ServerToolUsage::default(),
    };
    let Some(url) = input.get("url").and_then(Value::as_str).map(str::trim) else {
        return error("invalid_tool_input");
    };
    if url.chars().count() > MAX_URL_CHARS {
        return error("url_too_long");
    }
    if !conversation.contains(url) {
        return error("url_not_in_prior_context");
    }
    let fetched = toolbox
        .fetcher
        .get(url, allowlist, |u| {
            if tool.domains.permits(u) {
                Ok(())
            } else {
                Err(format!("`{u}` is outside the tool's domain filters"))
            }
        })
        .await;
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(err) => {
            tracing::debug!(error = %err, "web_fetch refused or failed");
            return match err {
                FetchError::NotAllowed(_) => error("url_not_allowed"),
                FetchError::NotAccessible(_) => error("url_not_accessible"),
                FetchError::TooLarge(_) => error("content_too_large"),
            };
        }
    };
    let Some((title, mut text)) = readable(&fetched).await else {
        return error("unsupported_content_type");
    };
    // About four characters a token: the limit is approximate, as the API's is.
    if let Some(limit) = max_content_tokens {
        let limit = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_mul(4);
        if let Some((cut, _)) = text.char_indices().nth(limit) {
            text.truncate(cut);
        }
    }
    let retrieved_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let final_url = fetched.url.to_string();
    let mut document = json!({
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": text},
    });
    if let Some(title) = &title {
        document["title"] = Value::String(title.clone());
    }
    // The answer cites the page the way it cites a document of the request.
    if matches!(
        tool.kind,
        crate::spec::Kind::WebFetch {
            citations: true,
            ..
        }
    ) {
        document["citations"] = json!({"enabled": true});
    }
    let for_model = match &title {
        Some(title) => format!("Fetched {final_url}\nTitle: {title}\n\n{text}"),
        None => format!("Fetched {final_url}\n\n{text}"),
    };
    Outcome {
        result: ContentBlock::WebFetchToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({
                "type": "web_fetch_result",
                "url": final_url,
                "retrieved_at": retrieved_at,
                "content": document,
            }),
        },
        for_model,
        is_error: false,
        usage: ServerToolUsage {
            web_fetch_requests: 1,
            ..ServerToolUsage::default()
        },
    }
}

/// The title and text of what was fetched; `None` for media the tool cannot read.
async fn readable(fetched: &Fetched) -> Option<(Option<String>, String)> {
    match fetched.media_type.as_str() {
        "text/html" | "application/xhtml+xml" => {
            let html = String::from_utf8_lossy(&fetched.body);
            let text = html2text::from_read(fetched.body.as_slice(), 100).ok()?;
            Some((html_title(&html), text.trim().to_owned()))
        }
        // PDFs come back as their text, a plain-text document.
        "application/pdf" => crate::pdf::read(fetched.body.clone())
            .await
            .ok()
            .map(|pages| (None, pages.join("\n\n"))),
        media if media.starts_with("text/") || media == "application/json" => {
            String::from_utf8(fetched.body.clone())
                .ok()
                .map(|t| (None, t))
        }
        _ => None,
    }
}

/// The text of the first `<title>` element.
fn html_title(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    let open = lower.find("<title")?;
    let start = open + lower[open..].find('>')? + 1;
    let end = start + lower[start..].find("</title")?;
    let title = html
        .get(start..end)?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!title.is_empty()).then_some(title)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_read_from_the_head() {
        assert_eq!(
            html_title("<html><HEAD><Title lang=en>\n Rust  book </title></head>").as_deref(),
            Some("Rust book")
        );
        assert_eq!(html_title("<p>no title</p>"), None);
    }
}
