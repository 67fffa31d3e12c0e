//! Commands run in a sandbox: bubblewrap (Debian's `bubblewrap`) with every namespace
//! unshared, so no network but loopback, its own PIDs and mounts; the system's `/usr`
//! read-only and nothing else of the host; the container's directory as `/workspace`, the
//! only place a write outlives the command. Inside, `prlimit` caps address space, CPU
//! seconds, processes and file size; the server kills the whole namespace at the wall-clock
//! limit. When the server runs as root the command runs as `nobody`, so the process cap
//! holds (the kernel exempts root from it). docs/server-tools.md says what this does and
//! does not isolate.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Limits of one command.
#[derive(Debug, Clone)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_seconds: u64,
    pub wall: Duration,
    pub processes: u32,
    pub file_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 1024 * 1024 * 1024,
            cpu_seconds: 60,
            wall: Duration::from_secs(60),
            processes: 64,
            file_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran {
    pub stdout: String,
    pub stderr: String,
    pub return_code: i32,
    /// Killed at the wall-clock limit.
    pub timed_out: bool,
}

/// Bytes of stdout and of stderr kept; the rest is cut off.
const MAX_OUTPUT: usize = 100 * 1024;

/// The uid commands run as when the server is root.
const NOBODY: u32 = 65534;

/// Whether the server runs as root (read from `/proc`, as `unsafe` is not allowed here).
pub fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Where containers live by default: under the data directory, or, for a server running as
/// root, under `/var/lib/missive`, since the sandbox's user must be able to reach them
/// and a root home directory is closed to others.
pub fn default_root(home: &Path) -> PathBuf {
    if running_as_root() {
        PathBuf::from("/var/lib/missive/containers")
    } else {
        home.join("containers")
    }
}

/// Makes `dir` a directory the sandboxed user may pass through but not list.
pub fn prepare_parent(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    if running_as_root() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    }
    Ok(())
}

/// Makes `dir` a workspace the sandboxed user can write.
pub fn prepare_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    if running_as_root() {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))?;
    }
    Ok(())
}

/// Runs `command` with bash in the sandbox over `workspace`.
pub async fn run(workspace: &Path, command: &str, limits: &Limits) -> Result<Ran, String> {
    let mut args: Vec<String> = Vec::new();
    let program: PathBuf = if running_as_root() {
        args.extend([
            format!("--reuid={NOBODY}"),
            format!("--regid={NOBODY}"),
            "--clear-groups".into(),
            "bwrap".into(),
        ]);
        PathBuf::from("setpriv")
    } else {
        PathBuf::from("bwrap")
    };
    let workspace = workspace.to_string_lossy().into_owned();
    args.extend(
        [
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--symlink",
            "usr/sbin",
            "/sbin",
            "--ro-bind-try",
            "/etc/alternatives",
            "/etc/alternatives",
            "--ro-bind-try",
            "/etc/ld.so.cache",
            "/etc/ld.so.cache",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            &workspace,
            "/workspace",
            "--chdir",
            "/workspace",
            "--clearenv",
            "--setenv",
            "HOME",
            "/workspace",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--",
            "/usr/bin/prlimit",
        ]
        .map(str::to_owned),
    );
    args.push(format!("--as={}", limits.memory_bytes));
    args.push(format!("--cpu={}", limits.cpu_seconds));
    args.push(format!("--nproc={}", limits.processes));
    args.push(format!("--fsize={}", limits.file_bytes));
    args.extend(["--", "/bin/bash", "-c", command].map(str::to_owned));
    let mut child = tokio::process::Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("the sandbox could not start ({}): {e}", program.display()))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let outputs = async { tokio::join!(read_capped(stdout), read_capped(stderr)) };
    let waited = tokio::time::timeout(limits.wall, async {
        let (out, err) = outputs.await;
        let status = child.wait().await;
        (out, err, status)
    })
    .await;
    match waited {
        Ok((out, err, status)) => {
            let status = status.map_err(|e| e.to_string())?;
            Ok(Ran {
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&err).into_owned(),
                // Killed by a signal (memory, CPU): the shell's convention, 128 + signal.
                return_code: status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(9)
                }),
                timed_out: false,
            })
        }
        Err(_) => {
            // The namespace's first process is killed, which takes everything in it down;
            // bubblewrap then exits and is reaped here. Killing bubblewrap instead would
            // leave that process to the host's init to reap.
            if let Some(pid) = child.id() {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                for inner in children.split_whitespace() {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-KILL", inner])
                        .status()
                        .await;
                }
            }
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            Ok(Ran {
                stdout: String::new(),
                stderr: format!("killed after {} s", limits.wall.as_secs()),
                return_code: 137,
                timed_out: true,
            })
        }
    }
}

/// Up to [`MAX_OUTPUT`] bytes of a pipe.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<R>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.take(MAX_OUTPUT as u64).read_to_end(&mut out).await;
    }
    out
}
