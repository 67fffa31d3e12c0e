//! `code_execution_20250825`: the model runs shell commands (`bash_code_execution`) and
//! edits files (`text_editor_code_execution`) in a container: a directory under
//! `MISSIVE_HOME/containers/<workspace>/` that the [`crate::sandbox`] mounts as
//! `/workspace`. A container is reused when a request names it, until it has been idle
//! for the configured time. Files a command writes come back as Files API files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use missive_protocol::content::ContentBlock;
use missive_protocol::usage::ServerToolUsage;
use serde_json::{json, Value};

use crate::sandbox::{self, Limits};
use crate::{Files, Outcome};

/// Files one command may hand back.
const MAX_OUTPUT_FILES: usize = 10;

/// Where containers live and how long an idle one is kept.
#[derive(Debug, Clone)]
pub struct Containers {
    pub root: PathBuf,
    pub idle: Duration,
    pub limits: Limits,
}

/// One request's container.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub dir: PathBuf,
    pub expires_at: SystemTime,
}

/// One lock per container directory: a command and a file edit never overlap. The editor
/// works on the host side (as the server's user) and resolves symlinks before it touches a
/// file; a command running at the same time could swap a checked path for a link.
static LOCKS: LazyLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(Mutex::default);

impl Container {
    /// Holds the container against every other command and edit of this process.
    async fn lock(&self) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = LOCKS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Locks nobody holds are dropped, so the map stays as small as what runs.
            locks.retain(|_, lock| Arc::strong_count(lock) > 1);
            Arc::clone(locks.entry(self.dir.clone()).or_default())
        };
        lock.lock_owned().await
    }

    /// The response's `container` object.
    pub fn wire(&self) -> Value {
        let expires = time::OffsetDateTime::from(self.expires_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        json!({"id": self.id, "expires_at": expires})
    }
}

impl Containers {
    /// The container `requested` names (it must be this workspace's and not expired), or
    /// a new one. Expired containers of the workspace are removed on the way.
    pub fn open(&self, requested: Option<&str>, workspace: &str) -> Result<Container, String> {
        let home = self.root.join(safe_name(workspace));
        sandbox::prepare_parent(&self.root).map_err(|e| format!("container: {e}"))?;
        sandbox::prepare_parent(&home).map_err(|e| format!("container: {e}"))?;
        self.sweep(&home);
        let id = match requested {
            Some(id) => {
                let dir = home.join(safe_name(id));
                if !id.starts_with("container_") || !dir.is_dir() {
                    return Err(format!(
                        "container: `{id}` was not found, or it expired after {} days idle",
                        self.idle.as_secs() / 86_400
                    ));
                }
                id.to_owned()
            }
            None => missive_protocol::ids::new_id("container"),
        };
        let dir = home.join(safe_name(&id));
        sandbox::prepare_dir(&dir).map_err(|e| format!("container: {e}"))?;
        touch(&dir);
        Ok(Container {
            id,
            dir,
            expires_at: SystemTime::now() + self.idle,
        })
    }

    fn sweep(&self, home: &Path) {
        let Ok(entries) = std::fs::read_dir(home) else {
            return;
        };
        for entry in entries.flatten() {
            let idle = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if idle.is_some_and(|idle| idle > self.idle) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A name safe as one path component.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn touch(dir: &Path) {
    let _ = std::fs::File::open(dir).and_then(|f| f.set_modified(SystemTime::now()));
}

/// The tools the model is given for a `code_execution` tool.
pub fn client_tools() -> [(&'static str, &'static str, Value); 2] {
    [
        (
            "bash_code_execution",
            "Run a bash command in a sandboxed Linux container (no network). The working directory /workspace keeps its files between commands; files written there are returned to the user. Python 3 is installed.",
            json!({
                "type": "object",
                "properties": {"command": {"type": "string", "description": "The bash command to run."}},
                "required": ["command"],
                "additionalProperties": false
            }),
        ),
        (
            "text_editor_code_execution",
            "View, create or edit a text file in the container's /workspace.",
            json!({
                "type": "object",
                "properties": {
                    "command": {"type": "string", "enum": ["view", "create", "str_replace"]},
                    "path": {"type": "string", "description": "A path under /workspace."},
                    "file_text": {"type": "string"},
                    "old_str": {"type": "string"},
                    "new_str": {"type": "string"}
                },
                "required": ["command", "path"],
                "additionalProperties": false
            }),
        ),
    ]
}

/// Runs `bash_code_execution`: the command, then the files it wrote saved as Files API
/// files.
pub async fn bash(
    container: &Container,
    limits: &Limits,
    files: Option<&Arc<dyn Files>>,
    input: &Value,
    tool_use_id: &str,
) -> Outcome {
    let error = |code: &str| bash_error(tool_use_id, code);
    let Some(command) = input.get("command").and_then(Value::as_str) else {
        return error("invalid_tool_input");
    };
    let _held = container.lock().await;
    let before = snapshot(&container.dir);
    let started = std::time::Instant::now();
    let ran = match sandbox::run(&container.dir, command, limits).await {
        Ok(ran) => ran,
        Err(err) => {
            tracing::warn!(error = %err, "code execution sandbox");
            return error("unavailable");
        }
    };
    touch(&container.dir);
    let usage = ServerToolUsage {
        code_execution_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..ServerToolUsage::default()
    };
    if ran.timed_out {
        return Outcome {
            usage,
            ..error("execution_time_exceeded")
        };
    }
    let mut outputs = Vec::new();
    let mut saved = Vec::new();
    if let Some(files) = files {
        for path in changed(&before, &snapshot(&container.dir))
            .into_iter()
            .take(MAX_OUTPUT_FILES)
        {
            let Ok(bytes) = std::fs::read(container.dir.join(&path)) else {
                continue;
            };
            match files.save(&path, bytes).await {
                Ok(file_id) => {
                    outputs.push(json!({"type": "bash_code_execution_output", "file_id": file_id}));
                    saved.push(format!("{path} ({file_id})"));
                }
                Err(err) => tracing::warn!(error = %err, "saving a container's output file"),
            }
        }
    }
    let mut for_model = format!(
        "exit code {}\nstdout:\n{}\nstderr:\n{}",
        ran.return_code, ran.stdout, ran.stderr
    );
    if !saved.is_empty() {
        for_model.push_str(&format!("\nfiles written: {}", saved.join(", ")));
    }
    Outcome {
        result: ContentBlock::BashCodeExecutionToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({
                "type": "bash_code_execution_result",
                "stdout": ran.stdout,
                "stderr": ran.stderr,
                "return_code": ran.return_code,
                "content": outputs,
            }),
        },
        for_model,
        is_error: ran.return_code != 0,
        usage,
    }
}

pub fn bash_error(tool_use_id: &str, code: &str) -> Outcome {
    Outcome {
        result: ContentBlock::BashCodeExecutionToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({"type": "bash_code_execution_tool_result_error", "error_code": code}),
        },
        for_model: format!("The command failed: {code}"),
        is_error: true,
        usage: Default::default(),
    }
}

pub fn editor_error(tool_use_id: &str, code: &str, message: &str) -> Outcome {
    Outcome {
        result: ContentBlock::TextEditorCodeExecutionToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content: json!({
                "type": "text_editor_code_execution_tool_result_error",
                "error_code": code,
                "error_message": message,
            }),
        },
        for_model: format!("The edit failed: {code}: {message}"),
        is_error: true,
        usage: Default::default(),
    }
}

/// Runs `text_editor_code_execution` on the host side of the container's directory. A
/// path (after symlinks) must stay inside it: a link the code planted cannot reach out.
pub async fn text_editor(container: &Container, input: &Value, tool_use_id: &str) -> Outcome {
    let _held = container.lock().await;
    let error = |code: &str, message: &str| editor_error(tool_use_id, code, message);
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    let (Some(command), Some(path)) = (text("command"), text("path")) else {
        return error("invalid_tool_input", "`command` and `path` are required");
    };
    let Some(host) = inside(&container.dir, path) else {
        return error("invalid_tool_input", "the path is outside /workspace");
    };
    let content = match command {
        "view" => match std::fs::read_to_string(&host) {
            Ok(body) => {
                let lines = body.lines().count();
                json!({
                    "type": "text_editor_code_execution_view_result",
                    "file_type": "text",
                    "content": body,
                    "num_lines": lines,
                    "start_line": 1,
                    "total_lines": lines,
                })
            }
            Err(_) => return error("file_not_found", "no such text file"),
        },
        "create" => {
            let Some(body) = text("file_text") else {
                return error("invalid_tool_input", "`file_text` is required");
            };
            let existed = host.exists();
            if let Err(err) = std::fs::write(&host, body) {
                return error("unavailable", &err.to_string());
            }
            json!({"type": "text_editor_code_execution_create_result", "is_file_update": existed})
        }
        "str_replace" => {
            let (Some(old), Some(new)) = (text("old_str"), text("new_str")) else {
                return error("invalid_tool_input", "`old_str` and `new_str` are required");
            };
            let Ok(body) = std::fs::read_to_string(&host) else {
                return error("file_not_found", "no such text file");
            };
            let Some(at) = body.find(old) else {
                return error("invalid_tool_input", "`old_str` was not found");
            };
            let old_start = body[..at].lines().count() + 1;
            let replaced = body.replacen(old, new, 1);
            if let Err(err) = std::fs::write(&host, &replaced) {
                return error("unavailable", &err.to_string());
            }
            json!({
                "type": "text_editor_code_execution_str_replace_result",
                "old_start": old_start,
                "old_lines": old.lines().count(),
                "new_start": old_start,
                "new_lines": new.lines().count(),
                "lines": new.lines().collect::<Vec<_>>(),
            })
        }
        other => return error("invalid_tool_input", &format!("unknown command `{other}`")),
    };
    Outcome {
        for_model: content["content"]
            .as_str()
            .map_or_else(|| content.to_string(), str::to_owned),
        result: ContentBlock::TextEditorCodeExecutionToolResult {
            tool_use_id: tool_use_id.to_owned(),
            content,
        },
        is_error: false,
        usage: Default::default(),
    }
}

/// `path` (absolute under `/workspace`, or relative to it) as a host path inside `root`,
/// symlinks resolved; `None` when it leads out.
fn inside(root: &Path, path: &str) -> Option<PathBuf> {
    let relative = path
        .strip_prefix("/workspace")
        .unwrap_or(path)
        .trim_start_matches('/');
    let root = root.canonicalize().ok()?;
    let wanted = root.join(relative);
    // The file may not exist yet (create): resolve its parent.
    let resolved = match wanted.canonicalize() {
        Ok(path) => path,
        Err(_) => wanted
            .parent()?
            .canonicalize()
            .ok()?
            .join(wanted.file_name()?),
    };
    resolved.starts_with(&root).then_some(resolved)
}

/// Regular files under `dir` (relative path → size and modification time).
fn snapshot(dir: &Path) -> HashMap<String, (u64, Option<SystemTime>)> {
    let mut found = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            // `symlink_metadata`: a link is neither followed nor returned.
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                if let Ok(relative) = entry.path().strip_prefix(dir) {
                    found.insert(
                        relative.to_string_lossy().into_owned(),
                        (meta.len(), meta.modified().ok()),
                    );
                }
            }
            if found.len() > 10_000 {
                return found;
            }
        }
    }
    found
}

/// Files new or changed between two snapshots, sorted.
fn changed(
    before: &HashMap<String, (u64, Option<SystemTime>)>,
    after: &HashMap<String, (u64, Option<SystemTime>)>,
) -> Vec<String> {
    let mut paths: Vec<String> = after
        .iter()
        .filter(|(path, stat)| before.get(*path) != Some(stat))
        .map(|(path, _)| path.clone())
        .collect();
    paths.sort();
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_links_cannot_leave_the_container() {
        let dir = tempfile_dir();
        std::fs::write(dir.join("a.txt"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", dir.join("out")).unwrap();
        assert!(inside(&dir, "/workspace/a.txt").is_some());
        assert!(inside(&dir, "new.txt").is_some());
        assert!(inside(&dir, "/workspace/../etc/passwd").is_none());
        assert!(inside(&dir, "out/passwd").is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(missive_protocol::ids::new_id("missive-test"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
