//! An OpenAI-compatible chat-completions server as a `Backend`: the request translated
//! (tools, tool results, system, stop sequences, `output_config.format` as a JSON-schema
//! response format), the streamed reply translated back into backend events, the usage
//! taken from the final chunk (cached prompt tokens become cache reads).

use std::collections::BTreeMap;

use futures::StreamExt;
use missive_backend::{
    Backend, BackendError, BackendEvent, EventStream, FinishReason, GenerateRequest,
    ModelDescriptor, PromptUsage,
};
use serde_json::Value;

use crate::UpstreamConfig;

pub struct OpenAiBackend {
    config: UpstreamConfig,
    client: reqwest::Client,
    descriptor: ModelDescriptor,
    /// Parsed once: a gateway sends every request here.
    completions: reqwest::Url,
}

impl OpenAiBackend {
    pub fn new(config: UpstreamConfig, descriptor: ModelDescriptor) -> Result<Self, BackendError> {
        let completions = reqwest::Url::parse(&config.url("/chat/completions")).map_err(|e| {
            BackendError::Generation(format!("upstream {}: bad url: {e}", config.name))
        })?;
        Ok(Self {
            client: config.client()?,
            config,
            descriptor,
            completions,
        })
    }
}

/// Folds chat-completion chunks into backend events.
#[derive(Default)]
struct Decoder {
    started: bool,
    /// Tool calls by index: id, name, arguments so far.
    calls: BTreeMap<u64, (String, String, String)>,
    finish_reason: Option<String>,
    stop_string: Option<String>,
    prompt_tokens: u32,
    cached_tokens: u32,
    completion_tokens: u32,
    text_chunks: u32,
}

impl Decoder {
    fn chunk(&mut self, chunk: &Value, out: &mut Vec<Result<BackendEvent, BackendError>>) {
        if !self.started {
            self.started = true;
            // The prompt's accounting arrives with the last chunk; `Finished` carries it.
            out.push(Ok(BackendEvent::Started {
                prompt: PromptUsage::default(),
            }));
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            let n = |v: Option<&Value>| {
                v.and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
            };
            self.prompt_tokens = n(usage.get("prompt_tokens")).unwrap_or(0);
            self.completion_tokens = n(usage.get("completion_tokens")).unwrap_or(0);
            self.cached_tokens =
                n(usage.pointer("/prompt_tokens_details/cached_tokens")).unwrap_or(0);
        }
        let Some(choice) = chunk.get("choices").and_then(|c| c.get(0)) else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.text_chunks += 1;
            out.push(Ok(BackendEvent::Text(text.to_owned())));
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for call in calls {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    entry.0 = id.to_owned();
                }
                if let Some(name) = call.pointer("/function/name").and_then(Value::as_str) {
                    entry.1.push_str(name);
                }
                if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    entry.2.push_str(args);
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_owned());
        }
        // vLLM names the stop string that ended the reply.
        if let Some(stop) = choice.get("stop_reason").and_then(Value::as_str) {
            self.stop_string = Some(stop.to_owned());
        }
    }

    fn finish(
        &mut self,
        stop_sequences: &[String],
        out: &mut Vec<Result<BackendEvent, BackendError>>,
    ) {
        if !self.started {
            out.push(Err(BackendError::Generation(
                "the upstream closed the stream before answering".into(),
            )));
            return;
        }
        let calls = std::mem::take(&mut self.calls);
        let called = !calls.is_empty();
        for (_, (_, name, args)) in calls {
            let input = if args.trim().is_empty() {
                Ok(Value::Object(Default::default()))
            } else {
                serde_json::from_str(&args)
            };
            match input {
                Ok(input) => out.push(Ok(BackendEvent::ToolUse { name, input })),
                Err(err) => {
                    out.push(Err(BackendError::Generation(format!(
                        "the upstream returned arguments for `{name}` that are not JSON: {err}"
                    ))));
                    return;
                }
            }
        }
        let reason = match self.finish_reason.as_deref() {
            _ if called => FinishReason::ToolUse,
            Some("length") => FinishReason::MaxTokens,
            Some("tool_calls") => FinishReason::ToolUse,
            _ => match self
                .stop_string
                .take()
                .filter(|s| stop_sequences.contains(s))
            {
                Some(stop) => FinishReason::StopSequence(stop),
                None => FinishReason::EndTurn,
            },
        };
        let cached = self.cached_tokens.min(self.prompt_tokens);
        out.push(Ok(BackendEvent::Finished {
            reason,
            // A server that reports no usage still produced text: count its chunks.
            output_tokens: if self.completion_tokens > 0 {
                self.completion_tokens
            } else {
                self.text_chunks
            },
            thinking_tokens: 0,
            prompt: Some(PromptUsage {
                input_tokens: self.prompt_tokens - cached,
                cache_read_input_tokens: cached,
                ..PromptUsage::default()
            }),
        }));
    }
}

#[async_trait::async_trait]
impl Backend for OpenAiBackend {
    fn descriptor(&self) -> &ModelDescriptor {
        &self.descriptor
    }

    async fn count_tokens(&self, _request: &GenerateRequest) -> Result<u32, BackendError> {
        Err(BackendError::Unsupported(format!(
            "count_tokens: model `{}` is served by the OpenAI-compatible upstream `{}`, which cannot count tokens exactly",
            self.descriptor.id, self.config.name
        )))
    }

    async fn generate(&self, request: GenerateRequest) -> Result<EventStream, BackendError> {
        let body = crate::translate::chat_body(&request, &self.config.model)?;
        let mut call = self.client.post(self.completions.clone()).json(&body);
        if let Some(key) = &self.config.api_key {
            call = call.bearer_auth(key);
        }
        let response = self.config.send(call).await?;
        let stop_sequences = request.stop_sequences.clone();
        let name = self.config.name.clone();
        let chunks = crate::sse::data_events(Box::pin(response.bytes_stream()));
        let events = futures::stream::unfold(
            (Box::pin(chunks), Decoder::default(), false),
            move |(mut chunks, mut decoder, done)| {
                let stop_sequences = stop_sequences.clone();
                let name = name.clone();
                async move {
                    if done {
                        return None;
                    }
                    let mut out = Vec::new();
                    let mut finished = false;
                    match chunks.next().await {
                        Some(Ok(data)) if data.trim() == "[DONE]" => {
                            decoder.finish(&stop_sequences, &mut out);
                            finished = true;
                        }
                        Some(Ok(data)) => match serde_json::from_str::<Value>(&data) {
                            Ok(chunk) if chunk.get("error").is_some() => {
                                out.push(Err(BackendError::Generation(format!(
                                    "upstream `{name}`: {}",
                                    chunk["error"]
                                ))));
                                finished = true;
                            }
                            Ok(chunk) => decoder.chunk(&chunk, &mut out),
                            Err(err) => {
                                out.push(Err(BackendError::Generation(format!(
                                    "upstream `{name}` sent a chunk that is not JSON: {err}"
                                ))));
                                finished = true;
                            }
                        },
                        Some(Err(err)) => {
                            out.push(Err(BackendError::Generation(format!(
                                "upstream `{name}` broke off: {err}"
                            ))));
                            finished = true;
                        }
                        None => {
                            decoder.finish(&stop_sequences, &mut out);
                            finished = true;
                        }
                    }
                    Some((futures::stream::iter(out), (chunks, decoder, finished)))
                }
            },
        )
        .flatten();
        Ok(Box::pin(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streamed_tool_calls_and_usage_become_backend_events() {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for chunk in [
            json!({"choices": [{"delta": {"role": "assistant", "content": ""}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{\"ci"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 12, "prompt_tokens_details": {"cached_tokens": 32}}}),
        ] {
            d.chunk(&chunk, &mut out);
        }
        d.finish(&[], &mut out);
        let events: Vec<BackendEvent> = out.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            events,
            vec![
                BackendEvent::Started {
                    prompt: PromptUsage::default()
                },
                BackendEvent::ToolUse {
                    name: "get_weather".into(),
                    input: json!({"city": "Paris"})
                },
                BackendEvent::Finished {
                    reason: FinishReason::ToolUse,
                    output_tokens: 12,
                    thinking_tokens: 0,
                    prompt: Some(PromptUsage {
                        input_tokens: 18,
                        cache_read_input_tokens: 32,
                        ..PromptUsage::default()
                    }),
                },
            ]
        );
    }

    #[test]
    fn a_stream_that_never_answered_is_an_error() {
        let mut out = Vec::new();
        Decoder::default().finish(&[], &mut out);
        assert!(out[0].is_err());
    }
}
