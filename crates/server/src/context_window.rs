//! Keeps a conversation inside its model's window: `context_management` edits applied
//! before rendering, and compaction, which summarises the conversation with the served
//! model itself and restarts it from the summary.
//!
//! Edits run in the order the request lists them; each trigger is checked against the
//! prompt as the edits before it left it. A compaction fires past its trigger, and also
//! when the prompt would leave the reply no room in the model's window, so that a long
//! session on a small window is compacted instead of refused.

use missive_backend::context_edits::{self, ClearToolUses};
use missive_backend::history::SUMMARY_PREAMBLE;
use missive_backend::{
    Backend, BackendError, BackendEvent, EventStream, FinishReason, GenerateRequest, PromptUsage,
    Turn,
};
use missive_protocol::content::ContentBlockParam;
use missive_protocol::context::{
    AppliedEdit, CompactionConfig, ContextEdit, ContextManagement, Count, IterationKind,
    IterationUsage, Trigger,
};
use missive_protocol::messages::Role;
use missive_protocol::tools::ToolChoice;

/// `clear_tool_uses` fires past this many input tokens when it names no trigger.
const DEFAULT_CLEAR_TRIGGER: u32 = 100_000;
/// `compact_20260112` fires past this many input tokens when it names no trigger.
const DEFAULT_COMPACT_TRIGGER: u32 = 150_000;
/// Longest summary a compaction writes (and at most a quarter of the window).
const SUMMARY_MAX_TOKENS: u32 = 512;

/// What compaction asks of the model when the request gives no instructions.
const SUMMARY_PROMPT: &str = "Summarize the conversation so far in a short paragraph, so that \
the work can go on from your summary alone. Copy every name, number and code word exactly. \
Say what the user asked for, what was found, and what is left to do.";

/// What the edits did, for the response.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub edits: Vec<AppliedEdit>,
    /// Prompt tokens before any edit, when an edit counted them.
    pub original_input_tokens: Option<u32>,
    /// A compaction is due: run [`compact`] with these instructions.
    pub compaction: Option<Compaction>,
}

/// A compaction that is due.
#[derive(Debug, Clone, Default)]
pub struct Compaction {
    pub instructions: Option<String>,
    /// Answer with the compaction block alone (`stop_reason: "compaction"`).
    pub pause: bool,
}

/// A finished compaction: the summary (`None` if the model wrote none) and what it cost.
/// The summary quotes the user's messages before the model's own words.
#[derive(Debug, Clone)]
pub struct Summary {
    pub text: Option<String>,
    pub usage: IterationUsage,
}

/// What a request asks done to its context: `context_management`, or the `compaction`
/// parameter (the two never come together).
#[derive(Debug, Clone, Default)]
pub struct ContextAsks {
    pub management: Option<ContextManagement>,
    pub compaction: Option<CompactionConfig>,
}

/// A reply under way, and what was done to its context first.
pub struct Generation {
    pub events: EventStream,
    pub summary: Option<Summary>,
    /// `Some` when the request asked for context management.
    pub applied_edits: Option<Vec<AppliedEdit>>,
}

/// Applies what `asks` asks to `request`, then starts the reply: from the summary when
/// the conversation was compacted, and none at all when the compaction pauses it.
pub async fn generate(
    backend: &dyn Backend,
    mut request: GenerateRequest,
    asks: &ContextAsks,
) -> Result<Generation, BackendError> {
    let (summary, applied_edits, pause) = if let Some(config) = &asks.compaction {
        let summary = compact(backend, &request, config.instructions()).await?;
        (Some(summary), None, true)
    } else if let Some(management) = &asks.management {
        let applied = apply(backend, &mut request, management).await?;
        let mut pause = false;
        let summary = match &applied.compaction {
            Some(due) => {
                let summary = compact(backend, &request, due.instructions.as_deref()).await?;
                if let Some(text) = &summary.text {
                    restart_from(&mut request, text);
                    pause = due.pause;
                }
                Some(summary)
            }
            None => None,
        };
        (summary, Some(applied.edits), pause)
    } else {
        (None, None, false)
    };
    let events = if pause {
        paused()
    } else {
        backend.generate(request).await?
    };
    Ok(Generation {
        events,
        summary,
        applied_edits,
    })
}

/// The events of a reply that stops at its compaction block.
fn paused() -> EventStream {
    Box::pin(futures::stream::iter([
        Ok(BackendEvent::Started {
            prompt: PromptUsage::default(),
        }),
        Ok(BackendEvent::Finished {
            reason: FinishReason::Compaction,
            output_tokens: 0,
            thinking_tokens: 0,
            prompt: None,
        }),
    ]))
}

/// Applies the clearing edits to `request` and says whether a compaction is due.
pub async fn apply(
    backend: &dyn Backend,
    request: &mut GenerateRequest,
    config: &ContextManagement,
) -> Result<Applied, BackendError> {
    let mut applied = Applied::default();
    let mut tokens: Option<u32> = None;
    for edit in &config.edits {
        match edit {
            ContextEdit::ClearThinking { keep } => {
                let keep = keep.map_or(Some(context_edits::DEFAULT_KEEP_THINKING_TURNS), |k| {
                    k.turns()
                });
                if keep.is_none() {
                    continue;
                }
                let mut edited = request.turns.clone();
                let cleared = context_edits::clear_thinking(&mut edited, keep);
                if cleared == 0 {
                    continue;
                }
                let before = count(backend, request, &mut tokens).await?;
                applied.original_input_tokens.get_or_insert(before);
                let saved = commit(backend, request, edited, before, &mut tokens).await?;
                applied.edits.push(AppliedEdit::ClearThinking {
                    cleared_input_tokens: saved,
                    cleared_thinking_turns: cleared,
                });
            }
            ContextEdit::ClearToolUses {
                trigger,
                keep,
                clear_at_least,
                exclude_tools,
                clear_tool_inputs,
            } => {
                let before = count(backend, request, &mut tokens).await?;
                applied.original_input_tokens.get_or_insert(before);
                let due = match trigger.unwrap_or(Trigger::InputTokens(DEFAULT_CLEAR_TRIGGER)) {
                    Trigger::InputTokens(n) => before > n,
                    Trigger::ToolUses(n) => context_edits::tool_use_count(&request.turns) > n,
                };
                if !due {
                    continue;
                }
                let mut how = ClearToolUses {
                    keep: keep.map_or(context_edits::DEFAULT_KEEP_TOOL_USES, Count::value),
                    exclude_tools: exclude_tools.as_deref().unwrap_or_default(),
                    clear_inputs: clear_tool_inputs.as_ref(),
                    step_uses: None,
                };
                let mut edited = request.turns.clone();
                let mut cleared = context_edits::clear_tool_uses(&mut edited, &how);
                if cleared == 0 {
                    continue;
                }
                // `clear_at_least` sets the step the cut moves by: as many uses as it takes,
                // at this conversation's measured tokens per cleared use.
                if let Some(least) = clear_at_least {
                    let all = backend
                        .count_tokens(&GenerateRequest {
                            turns: edited.clone(),
                            ..request.clone()
                        })
                        .await?;
                    let per_use = (before.saturating_sub(all) / cleared).max(1);
                    how.step_uses = Some(least.value().div_ceil(per_use) as usize);
                    edited = request.turns.clone();
                    cleared = context_edits::clear_tool_uses(&mut edited, &how);
                    if cleared == 0 {
                        continue;
                    }
                }
                let after = backend
                    .count_tokens(&GenerateRequest {
                        turns: edited.clone(),
                        ..request.clone()
                    })
                    .await?;
                let saved = before.saturating_sub(after);
                // Clearing less than asked would break the cached prefix for little gain.
                if clear_at_least.is_some_and(|least| saved < least.value()) {
                    continue;
                }
                request.turns = edited;
                tokens = Some(after);
                applied.edits.push(AppliedEdit::ClearToolUses {
                    cleared_input_tokens: saved,
                    cleared_tool_uses: cleared,
                });
            }
            ContextEdit::Compact {
                instructions,
                pause_after_compaction,
                trigger,
            } => {
                let now = count(backend, request, &mut tokens).await?;
                applied.original_input_tokens.get_or_insert(now);
                let window = backend.descriptor().max_input_tokens;
                let room = window.saturating_sub(request.max_tokens);
                let limit = match trigger.unwrap_or(Trigger::InputTokens(DEFAULT_COMPACT_TRIGGER)) {
                    Trigger::InputTokens(n) | Trigger::ToolUses(n) => n.min(room),
                };
                if now >= limit && request.turns.len() > 1 {
                    applied.compaction = Some(Compaction {
                        instructions: instructions.clone().filter(|s| !s.trim().is_empty()),
                        pause: pause_after_compaction.unwrap_or(false),
                    });
                }
            }
        }
    }
    Ok(applied)
}

/// The prompt's tokens, counted once until the prompt changes.
async fn count(
    backend: &dyn Backend,
    request: &GenerateRequest,
    tokens: &mut Option<u32>,
) -> Result<u32, BackendError> {
    if let Some(n) = *tokens {
        return Ok(n);
    }
    let n = backend.count_tokens(request).await?;
    *tokens = Some(n);
    Ok(n)
}

/// Makes `edited` the request's turns; returns the tokens that saved.
async fn commit(
    backend: &dyn Backend,
    request: &mut GenerateRequest,
    edited: Vec<Turn>,
    before: u32,
    tokens: &mut Option<u32>,
) -> Result<u32, BackendError> {
    request.turns = edited;
    *tokens = None;
    let after = count(backend, request, tokens).await?;
    Ok(before.saturating_sub(after))
}

/// Summarises `request`'s conversation with its own model. The summary request is the
/// conversation itself followed by the instructions, so its prompt is read from the cache
/// the conversation left.
pub async fn compact(
    backend: &dyn Backend,
    request: &GenerateRequest,
    instructions: Option<&str>,
) -> Result<Summary, BackendError> {
    let window = backend.descriptor().max_input_tokens;
    let max_tokens = SUMMARY_MAX_TOKENS
        .min(backend.descriptor().max_output_tokens)
        .min(window / 4);
    let mut summarise = GenerateRequest {
        max_tokens,
        stop_sequences: Vec::new(),
        tool_choice: (!request.tools.is_empty()).then_some(ToolChoice::None),
        thinking: None,
        output_format: None,
        ..request.clone()
    };
    if summarise.prefill().is_some() {
        summarise.turns.pop();
    }
    let ask = ContentBlockParam::Text {
        text: instructions.map_or_else(
            || SUMMARY_PROMPT.to_owned(),
            |i| format!("{SUMMARY_PROMPT}\n\n{i}"),
        ),
        cache_control: None,
        citations: None,
    };
    summarise.push_block(Role::User, ask);
    // A conversation past the window loses its oldest turns (after a leading summary,
    // which holds everything before it) until the summary request fits.
    while summarise.turns.len() > 2 {
        let tokens = backend.count_tokens(&summarise).await?;
        if tokens.saturating_add(max_tokens) <= window {
            break;
        }
        let first_kept = usize::from(starts_with_summary(&summarise.turns));
        summarise.turns.remove(first_kept);
    }
    let answer = missive_backend::answer::read(backend.generate(summarise).await?).await?;
    let text = answer.text.trim();
    Ok(Summary {
        text: (!text.is_empty()).then(|| with_user_words(&request.turns, text)),
        usage: answer
            .prompt
            .step(IterationKind::Compaction, answer.output_tokens),
    })
}

/// Heads the part of a summary that quotes the user.
const USER_WORDS: &str = "What the user wrote, quoted:";
/// Heads the model's own summary.
const MODEL_SUMMARY: &str = "Summary:";
/// Characters one quoted user message keeps.
const QUOTE_CHARS: usize = 300;
/// Characters all quotes keep together: the first message and the latest ones.
const QUOTES_CHARS: usize = 2_000;

/// The summary a compaction block carries: the user's own messages, quoted (shortened),
/// then the model's summary. Small models drop facts when they summarise; the user's
/// words (requests, names, code words) survive any number of compactions this way, at a
/// bounded size. Quotes in an earlier summary are carried over.
fn with_user_words(turns: &[Turn], model_summary: &str) -> String {
    let mut quotes: Vec<String> = Vec::new();
    for turn in turns.iter().filter(|t| t.role == Role::User) {
        for block in &turn.blocks {
            let ContentBlockParam::Text { text, .. } = block else {
                continue;
            };
            match text.strip_prefix(SUMMARY_PREAMBLE) {
                Some(earlier) => quotes.extend(
                    earlier
                        .split_once(MODEL_SUMMARY)
                        .map_or("", |(quoted, _)| quoted)
                        .lines()
                        .filter_map(|l| l.strip_prefix("- "))
                        .map(str::to_owned),
                ),
                None => {
                    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    let mut quote: String = flat.chars().take(QUOTE_CHARS).collect();
                    if quote.len() < flat.len() {
                        quote.push('…');
                    }
                    if !quote.is_empty() {
                        quotes.push(quote);
                    }
                }
            }
        }
    }
    while quotes.len() > 2 && quotes.iter().map(String::len).sum::<usize>() > QUOTES_CHARS {
        quotes.remove(1);
    }
    let quoted: Vec<String> = quotes.iter().map(|q| format!("- {q}")).collect();
    format!(
        "{USER_WORDS}\n{}\n\n{MODEL_SUMMARY}\n{model_summary}",
        quoted.join("\n")
    )
}

fn starts_with_summary(turns: &[Turn]) -> bool {
    turns.first().is_some_and(|t| {
        t.role == Role::User
            && matches!(t.blocks.first(), Some(ContentBlockParam::Text { text, .. }) if text.starts_with(SUMMARY_PREAMBLE))
    })
}

/// The conversation restarted from `summary`, as the client's next request will send it:
/// the summary turn, and nothing before it.
pub fn restart_from(request: &mut GenerateRequest, summary: &str) {
    request.turns = vec![Turn {
        role: Role::User,
        blocks: vec![ContentBlockParam::Text {
            text: format!("{SUMMARY_PREAMBLE}{summary}"),
            cache_control: None,
            citations: None,
        }],
    }];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Turn {
        Turn {
            role: Role::User,
            blocks: vec![ContentBlockParam::Text {
                text: text.to_owned(),
                cache_control: None,
                citations: None,
            }],
        }
    }

    #[test]
    fn the_users_words_survive_repeated_compactions_within_a_bound() {
        let first = with_user_words(
            &[user("The code word is HERON-42."), user("Read the files.")],
            "Read two files.",
        );
        assert_eq!(
            first,
            "What the user wrote, quoted:\n- The code word is HERON-42.\n- Read the files.\n\nSummary:\nRead two files."
        );
        // The next compaction starts from the first one's summary turn.
        let mut turns = vec![user(&format!("{SUMMARY_PREAMBLE}{first}"))];
        turns.extend((0..40).map(|i| user(&format!("step {i}: {}", "x".repeat(400)))));
        let second = with_user_words(&turns, "Did forty steps.");
        assert!(
            second.contains("- The code word is HERON-42.\n"),
            "{second}"
        );
        assert!(second.contains("step 39"), "the latest request is kept");
        assert!(!second.contains("step 0:"), "the oldest are dropped first");
        assert!(second.len() < QUOTES_CHARS + 200, "{}", second.len());
        assert!(second.ends_with("Summary:\nDid forty steps."));
    }
}
