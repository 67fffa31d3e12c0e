//! Prefixes kept on disk, so a restart or a new session with the same prompt prefix (the
//! tools and system prompt an agent resends every time) restores its KV cells instead of
//! computing them again.
//!
//! Each entry is llama.cpp's own sequence-state file (`<id>.kv`: the tokens and their KV
//! cells) and a small record beside it (`<id>.meta`: scope, tokens, size, CRC-32 and the
//! billing-ledger keys it backs). Entries live in `<root>/<model>/<fingerprint>/`, where
//! the fingerprint covers the model file and every setting that shapes the cells, so
//! another model or context never finds them.
//!
//! Crash safety comes from the order of writes: the state goes to a `.tmp` file, is synced
//! and renamed; only then is the record written (also through a synced `.tmp`). A record
//! is the only thing that makes an entry exist, and its CRC is checked against the whole
//! state file before every read. A `kill -9` at any point leaves at worst a `.tmp` file or
//! a state file without a record, both removed at the next start.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use crate::prompt_cache::Ttl;

/// Bumped when the record's meaning changes: older records are then ignored.
const FORMAT: u32 = 1;

/// Where a model's disk cache lives and how much it may hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCacheSettings {
    /// The cache root (`MISSIVE_HOME/kv-cache`); each model has its own folder inside.
    pub root: PathBuf,
    pub budget_bytes: u64,
}

/// Counters shared with the backend, for metrics and tests.
#[derive(Debug, Default)]
pub struct DiskCacheStats {
    pub bytes: AtomicU64,
    pub entries: AtomicU64,
    pub writes: AtomicU64,
    pub hits: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Entries found damaged (CRC, size or llama.cpp refused them) and dropped.
    pub rejected: AtomicU64,
}

/// A billing-ledger key an entry backs: a `cache_control` prefix whose cells it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LedgerKey {
    pub key: u64,
    pub ttl_s: u64,
}

impl LedgerKey {
    pub fn new(key: u64, ttl: Ttl) -> Self {
        Self {
            key,
            ttl_s: ttl.duration().as_secs(),
        }
    }
}

/// A ledger key read back at start, with what is left of its TTL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RestoredKey {
    pub key: u64,
    pub ttl: Ttl,
    pub left: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
struct Record {
    format: u32,
    fingerprint: String,
    scope: u64,
    tokens: Vec<i32>,
    bytes: u64,
    crc32: u32,
    ledger: Vec<LedgerKey>,
}

struct Entry {
    id: String,
    scope: u64,
    tokens: Vec<LlamaToken>,
    bytes: u64,
    crc32: u32,
    last_used: SystemTime,
}

/// A state file written by the engine thread, for the writer thread to make durable.
struct Pending {
    id: String,
    scope: u64,
    tokens: Vec<LlamaToken>,
    ledger: Vec<LedgerKey>,
}

struct Shared {
    model: String,
    dir: PathBuf,
    fingerprint: String,
    budget: u64,
    entries: Mutex<Vec<Entry>>,
    stats: Arc<DiskCacheStats>,
}

pub(crate) struct DiskCache {
    shared: Arc<Shared>,
    writer: Sender<Pending>,
    next_id: u64,
}

impl DiskCache {
    /// Opens (creating) the cache folder for `model` under `fingerprint`: records are read,
    /// what a crash left half-written is removed, and folders of other fingerprints of the
    /// same model (an older file or other settings) are dropped. Also returns the ledger
    /// keys whose TTL has not run out, measured from each entry's last use.
    pub fn open(
        settings: &DiskCacheSettings,
        model: &str,
        fingerprint: &str,
        stats: Arc<DiskCacheStats>,
    ) -> std::io::Result<(Self, Vec<RestoredKey>)> {
        let model_dir = settings.root.join(sanitize(model));
        let dir = model_dir.join(fingerprint);
        fs::create_dir_all(&dir)?;
        for other in fs::read_dir(&model_dir)?.flatten() {
            if other.file_name() != fingerprint {
                tracing::info!(path = %other.path().display(), "dropping a disk cache made with another model file or settings");
                let _ = fs::remove_dir_all(other.path());
            }
        }
        let (entries, keys) = read_records(&dir, fingerprint);
        let shared = Arc::new(Shared {
            model: model.to_owned(),
            dir,
            fingerprint: fingerprint.to_owned(),
            budget: settings.budget_bytes,
            entries: Mutex::new(entries),
            stats,
        });
        shared.enforce_budget(&mut shared.lock());
        let (writer, pending) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("disk-cache".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || write_loop(&shared, &pending)
            })?;
        Ok((
            Self {
                shared,
                writer,
                next_id: 0,
            },
            keys,
        ))
    }

    /// The entry of `scope` sharing the longest prefix with `prompt`: its id and that length.
    pub fn best(&self, scope: u64, prompt: &[LlamaToken]) -> Option<(String, usize)> {
        self.shared
            .lock()
            .iter()
            .filter(|e| e.scope == scope)
            .map(|e| (e.id.clone(), common_prefix(&e.tokens, prompt)))
            .max_by_key(|(_, common)| *common)
    }

    /// How many tokens entry `id` holds (0 when it is gone).
    pub fn tokens_of(&self, id: &str) -> usize {
        self.shared
            .lock()
            .iter()
            .find(|e| e.id == id)
            .map_or(0, |e| e.tokens.len())
    }

    /// Whether `tokens` would add at least `min_new` tokens to what the cache holds of them.
    pub fn worth_saving(&self, scope: u64, tokens: &[LlamaToken], min_new: usize) -> bool {
        let held = self.best(scope, tokens).map_or(0, |(_, common)| common);
        tokens.len() >= held + min_new.max(1)
    }

    /// Writes sequence `seq`'s cells (which hold exactly `tokens`) as a new entry. The
    /// state is written here; syncing, checking and publishing it happen on the writer
    /// thread, so the engine only pays for the copy.
    pub fn save(
        &mut self,
        ctx: &LlamaContext<'_>,
        seq: u32,
        scope: u64,
        tokens: &[LlamaToken],
        ledger: Vec<LedgerKey>,
    ) {
        self.next_id += 1;
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros());
        let id = format!("{stamp:x}-{}-{}", std::process::id(), self.next_id);
        let tmp = self.shared.dir.join(format!("{id}.kv.tmp"));
        let seq = i32::try_from(seq).unwrap_or(0);
        let started = Instant::now();
        if let Err(err) = ctx.state_seq_save_file(&tmp, seq, tokens) {
            tracing::warn!(error = %err, "writing a prefix to the disk cache failed");
            let _ = fs::remove_file(&tmp);
            return;
        }
        tracing::debug!(
            tokens = tokens.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "prefix state written for the disk cache"
        );
        let _ = self.writer.send(Pending {
            id,
            scope,
            tokens: tokens.to_vec(),
            ledger,
        });
    }

    /// Loads entry `id` into sequence `seq` after checking its state file against its
    /// record. Returns the tokens whose cells it now holds; a damaged entry is dropped
    /// (with a warning) and `None` returned.
    pub fn restore(
        &self,
        ctx: &mut LlamaContext<'_>,
        seq: u32,
        id: &str,
    ) -> Option<Vec<LlamaToken>> {
        let started = Instant::now();
        let (path, tokens, bytes) = self.check(id).ok()?;
        let seq = i32::try_from(seq).unwrap_or(0);
        match ctx.state_seq_load_file(&path, seq, tokens.len()) {
            Ok((loaded, _)) if loaded == tokens => {}
            Ok(_) => {
                let _ = ctx.clear_kv_cache_seq(u32::try_from(seq).ok(), None, None);
                return self.reject(id, "its tokens differ from its record");
            }
            Err(err) => {
                let _ = ctx.clear_kv_cache_seq(u32::try_from(seq).ok(), None, None);
                return self.reject(id, &err.to_string());
            }
        }
        let now = SystemTime::now();
        if let Some(entry) = self.shared.lock().iter_mut().find(|e| e.id == id) {
            entry.last_used = now;
        }
        // The record's time is the entry's last use, for the LRU order and for how much
        // of a ledger key's TTL is left after the next restart.
        let _ = File::options()
            .write(true)
            .open(self.shared.dir.join(format!("{id}.meta")))
            .and_then(|f| f.set_modified(now));
        let stats = &self.shared.stats;
        stats.hits.fetch_add(1, Ordering::Relaxed);
        stats.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        crate::telemetry::disk_cache_restored(&self.shared.model, started.elapsed());
        self.shared.publish(&self.shared.lock());
        tracing::debug!(
            tokens = tokens.len(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "prefix restored from the disk cache"
        );
        Some(tokens)
    }

    /// Entry `id`'s state file, tokens and size, once the file is found to match the
    /// record byte for byte (else the entry is dropped).
    fn check(&self, id: &str) -> Result<(PathBuf, Vec<LlamaToken>, u64), ()> {
        let (tokens, bytes, crc32) = {
            let entries = self.shared.lock();
            let entry = entries.iter().find(|e| e.id == id).ok_or(())?;
            (entry.tokens.clone(), entry.bytes, entry.crc32)
        };
        let path = self.shared.dir.join(format!("{id}.kv"));
        match file_crc(&path) {
            Ok((len, crc)) if len == bytes && crc == crc32 => Ok((path, tokens, bytes)),
            Ok(_) => {
                self.reject(id, "its state file does not match its record");
                Err(())
            }
            Err(err) => {
                self.reject(id, &err.to_string());
                Err(())
            }
        }
    }

    fn reject(&self, id: &str, why: &str) -> Option<Vec<LlamaToken>> {
        tracing::warn!(
            entry = id,
            reason = why,
            "a disk cache entry is damaged; dropped"
        );
        self.shared.stats.rejected.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.shared.lock();
        if let Some(at) = entries.iter().position(|e| e.id == id) {
            let entry = entries.swap_remove(at);
            self.shared.remove_files(&entry.id);
        }
        self.shared.publish(&entries);
        None
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes a written state durable and publishes it as an entry.
    fn finish(&self, pending: Pending) -> std::io::Result<()> {
        let tmp = self.dir.join(format!("{}.kv.tmp", pending.id));
        File::open(&tmp)?.sync_all()?;
        let (bytes, crc32) = file_crc(&tmp)?;
        fs::rename(&tmp, self.dir.join(format!("{}.kv", pending.id)))?;
        let record = Record {
            format: FORMAT,
            fingerprint: self.fingerprint.clone(),
            scope: pending.scope,
            tokens: pending.tokens.iter().map(|t| t.0).collect(),
            bytes,
            crc32,
            ledger: pending.ledger,
        };
        let meta_tmp = self.dir.join(format!("{}.meta.tmp", pending.id));
        let mut file = File::create(&meta_tmp)?;
        file.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        fs::rename(&meta_tmp, self.dir.join(format!("{}.meta", pending.id)))?;
        File::open(&self.dir)?.sync_all()?;
        let mut entries = self.lock();
        // An entry the new one extends holds nothing the new one does not.
        let superseded: Vec<String> = entries
            .iter()
            .filter(|e| e.scope == pending.scope && pending.tokens.starts_with(&e.tokens))
            .map(|e| e.id.clone())
            .collect();
        entries.retain(|e| !superseded.contains(&e.id));
        for id in &superseded {
            self.remove_files(id);
        }
        entries.push(Entry {
            id: pending.id,
            scope: pending.scope,
            tokens: pending.tokens,
            bytes,
            crc32,
            last_used: SystemTime::now(),
        });
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        self.enforce_budget(&mut entries);
        Ok(())
    }

    /// Drops the least recently used entries until the cache fits its budget.
    fn enforce_budget(&self, entries: &mut Vec<Entry>) {
        while entries.iter().map(|e| e.bytes).sum::<u64>() > self.budget {
            let Some(oldest) = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(i, _)| i)
            else {
                break;
            };
            let entry = entries.swap_remove(oldest);
            self.remove_files(&entry.id);
        }
        self.publish(entries);
    }

    /// Removes an entry's files, the record first, so a crash between the two leaves a
    /// state file without a record (cleaned at start), never a record without its state.
    fn remove_files(&self, id: &str) {
        let _ = fs::remove_file(self.dir.join(format!("{id}.meta")));
        let _ = fs::remove_file(self.dir.join(format!("{id}.kv")));
    }

    /// Updates the counters and the metrics, which are then current whenever scraped.
    fn publish(&self, entries: &[Entry]) {
        let bytes = entries.iter().map(|e| e.bytes).sum();
        self.stats.bytes.store(bytes, Ordering::Relaxed);
        self.stats
            .entries
            .store(entries.len() as u64, Ordering::Relaxed);
        crate::telemetry::disk_cache(&self.model, &self.stats);
    }
}

fn write_loop(shared: &Shared, pending: &Receiver<Pending>) {
    while let Ok(job) = pending.recv() {
        let id = job.id.clone();
        if let Err(err) = shared.finish(job) {
            tracing::warn!(error = %err, "publishing a disk cache entry failed");
            let _ = fs::remove_file(shared.dir.join(format!("{id}.kv.tmp")));
            shared.remove_files(&id);
        }
    }
}

/// Reads the records in `dir`, removing what is not a complete entry of `fingerprint`.
fn read_records(dir: &Path, fingerprint: &str) -> (Vec<Entry>, Vec<RestoredKey>) {
    let mut entries = Vec::new();
    let mut keys = Vec::new();
    let Ok(listing) = fs::read_dir(dir) else {
        return (entries, keys);
    };
    let mut states = Vec::new();
    let now = SystemTime::now();
    for file in listing.flatten() {
        let path = file.path();
        let name = file.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            let _ = fs::remove_file(&path);
        } else if let Some(id) = name.strip_suffix(".kv") {
            states.push(id.to_owned());
        } else if let Some(id) = name.strip_suffix(".meta") {
            match read_record(&path, fingerprint) {
                Some((record, last_used)) => {
                    let age = now.duration_since(last_used).unwrap_or_default();
                    keys.extend(record.ledger.iter().filter_map(|k| {
                        let ttl = Ttl::from_secs(k.ttl_s)?;
                        let left = ttl.duration().checked_sub(age)?;
                        Some(RestoredKey {
                            key: k.key,
                            ttl,
                            left,
                        })
                    }));
                    entries.push(Entry {
                        id: id.to_owned(),
                        scope: record.scope,
                        tokens: record.tokens.into_iter().map(LlamaToken).collect(),
                        bytes: record.bytes,
                        crc32: record.crc32,
                        last_used,
                    });
                }
                None => {
                    tracing::warn!(path = %path.display(), "an unreadable disk cache record; dropped");
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
    // A state file whose record is missing, or does not match its size, is no entry.
    entries.retain(|e| {
        let len = fs::metadata(dir.join(format!("{}.kv", e.id))).map(|m| m.len());
        let whole = len.is_ok_and(|len| len == e.bytes);
        if !whole {
            tracing::warn!(entry = %e.id, "a disk cache entry's state file is missing or cut short; dropped");
            let _ = fs::remove_file(dir.join(format!("{}.meta", e.id)));
        }
        whole
    });
    for id in states {
        if !entries.iter().any(|e| e.id == id) {
            let _ = fs::remove_file(dir.join(format!("{id}.kv")));
        }
    }
    (entries, keys)
}

fn read_record(path: &Path, fingerprint: &str) -> Option<(Record, SystemTime)> {
    let bytes = fs::read(path).ok()?;
    let record: Record = serde_json::from_slice(&bytes).ok()?;
    let modified = fs::metadata(path).and_then(|m| m.modified()).ok()?;
    (record.format == FORMAT && record.fingerprint == fingerprint).then_some((record, modified))
}

/// What the cells of a model depend on: its file (length, first and last MiB) and the
/// context settings given (`settings`), as a short hex digest.
pub(crate) fn fingerprint(model: &Path, settings: &str) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::{Seek, SeekFrom};
    const EDGE: u64 = 1 << 20;
    let mut file = File::open(model)?;
    let len = file.metadata()?.len();
    let mut hasher = Sha256::new();
    hasher.update(FORMAT.to_le_bytes());
    hasher.update(len.to_le_bytes());
    let mut edge = Vec::new();
    (&mut file).take(EDGE).read_to_end(&mut edge)?;
    hasher.update(&edge);
    edge.clear();
    file.seek(SeekFrom::Start(len.saturating_sub(EDGE)))?;
    file.take(EDGE).read_to_end(&mut edge)?;
    hasher.update(&edge);
    hasher.update(settings.as_bytes());
    Ok(hex::encode(&hasher.finalize()[..8]))
}

/// A file's length and CRC-32, read in large chunks.
fn file_crc(path: &Path) -> std::io::Result<(u64, u32)> {
    let mut file = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 8 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((len, hasher.finalize()));
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A model name as a folder name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                true => c,
                false => '_',
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(root: &Path, budget_bytes: u64) -> DiskCacheSettings {
        DiskCacheSettings {
            root: root.to_owned(),
            budget_bytes,
        }
    }

    fn open(root: &Path, fingerprint: &str, budget: u64) -> (DiskCache, Vec<RestoredKey>) {
        DiskCache::open(
            &settings(root, budget),
            "test-model",
            fingerprint,
            Arc::default(),
        )
        .unwrap()
    }

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().copied().map(LlamaToken).collect()
    }

    /// Publishes an entry as the writer thread does, from a state file of `bytes`.
    fn add(cache: &DiskCache, id: &str, ids: &[i32], bytes: &[u8], ledger: Vec<LedgerKey>) {
        fs::write(cache.shared.dir.join(format!("{id}.kv.tmp")), bytes).unwrap();
        cache
            .shared
            .finish(Pending {
                id: id.into(),
                scope: 7,
                tokens: tokens(ids),
                ledger,
            })
            .unwrap();
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn an_entry_survives_reopening_and_what_a_crash_left_half_written_is_removed() {
        let root = tempfile::tempdir().unwrap();
        let (cache, _) = open(root.path(), "aaaa", 1 << 20);
        add(&cache, "good", &[1, 2, 3, 4], b"state bytes", Vec::new());
        let dir = cache.shared.dir.clone();
        // What a kill -9 can leave at each step of a write: a state still being written, a
        // state renamed before its record, a record still being written, and a record whose
        // state file was cut short.
        fs::write(dir.join("b.kv.tmp"), b"partial").unwrap();
        fs::write(dir.join("c.kv"), b"no record").unwrap();
        fs::write(dir.join("d.meta.tmp"), b"{\"format\":").unwrap();
        add(&cache, "e", &[9, 9, 9], b"a longer state file", Vec::new());
        fs::write(dir.join("e.kv"), b"a longer").unwrap();
        drop(cache);

        let (cache, _) = open(root.path(), "aaaa", 1 << 20);
        assert_eq!(files(&dir), ["good.kv", "good.meta"]);
        assert_eq!(
            cache.best(7, &tokens(&[1, 2, 3, 5])),
            Some(("good".to_owned(), 3))
        );
        // Another scope never sees it.
        assert_eq!(cache.best(8, &tokens(&[1, 2, 3, 5])), None);
    }

    #[test]
    fn a_state_file_changed_after_its_record_is_never_read_as_valid() {
        let root = tempfile::tempdir().unwrap();
        let (cache, _) = open(root.path(), "aaaa", 1 << 20);
        add(&cache, "x", &[1, 2, 3], b"0123456789", Vec::new());
        assert!(cache.check("x").is_ok());
        // Same length, one byte changed: only the checksum can tell.
        fs::write(cache.shared.dir.join("x.kv"), b"0123456780").unwrap();
        assert!(cache.check("x").is_err());
        assert_eq!(cache.best(7, &tokens(&[1, 2, 3])), None);
        assert!(files(&cache.shared.dir).is_empty());
        assert_eq!(cache.shared.stats.rejected.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn another_model_file_or_settings_never_reads_an_entry() {
        let root = tempfile::tempdir().unwrap();
        let (cache, _) = open(root.path(), "aaaa", 1 << 20);
        add(&cache, "x", &[1, 2, 3], b"state", Vec::new());
        let old_dir = cache.shared.dir.clone();
        drop(cache);
        // A record copied under another fingerprint names its own and is dropped too.
        let other = root.path().join("test-model").join("bbbb");
        fs::create_dir_all(&other).unwrap();
        fs::copy(old_dir.join("x.meta"), other.join("x.meta")).unwrap();
        fs::copy(old_dir.join("x.kv"), other.join("x.kv")).unwrap();
        let (cache, _) = open(root.path(), "bbbb", 1 << 20);
        assert_eq!(cache.best(7, &tokens(&[1, 2, 3])), None);
        assert!(!old_dir.exists());
        assert!(files(&other).is_empty());
    }

    #[test]
    fn the_budget_drops_the_least_recently_used_and_an_extended_prefix_replaces_its_own() {
        let root = tempfile::tempdir().unwrap();
        let (cache, _) = open(root.path(), "aaaa", 25);
        add(&cache, "a", &[1, 1], &[0; 10], Vec::new());
        add(&cache, "b", &[2, 2], &[0; 10], Vec::new());
        add(&cache, "c", &[3, 3], &[0; 10], Vec::new());
        assert_eq!(
            files(&cache.shared.dir),
            ["b.kv", "b.meta", "c.kv", "c.meta"]
        );
        add(&cache, "c2", &[3, 3, 4], &[0; 5], Vec::new());
        assert_eq!(
            files(&cache.shared.dir),
            ["b.kv", "b.meta", "c2.kv", "c2.meta"]
        );
        assert!(cache.worth_saving(7, &tokens(&[3, 3, 4, 5, 6]), 2));
        assert!(!cache.worth_saving(7, &tokens(&[3, 3, 4, 5]), 2));
    }

    #[test]
    fn ledger_keys_come_back_with_what_is_left_of_their_ttl() {
        let root = tempfile::tempdir().unwrap();
        let (cache, _) = open(root.path(), "aaaa", 1 << 20);
        let keys = vec![
            LedgerKey::new(11, Ttl::FiveMinutes),
            LedgerKey::new(12, Ttl::OneHour),
        ];
        add(&cache, "x", &[1, 2, 3], b"state", keys);
        // Last used ten minutes ago: the five-minute key has run out, the hour has not.
        let record = File::options()
            .write(true)
            .open(cache.shared.dir.join("x.meta"))
            .unwrap();
        record
            .set_modified(SystemTime::now() - Duration::from_secs(600))
            .unwrap();
        drop(cache);
        let (_, restored) = open(root.path(), "aaaa", 1 << 20);
        assert_eq!(restored.len(), 1);
        assert_eq!((restored[0].key, restored[0].ttl), (12, Ttl::OneHour));
        assert!(restored[0].left <= Duration::from_secs(3000));
        assert!(restored[0].left > Duration::from_secs(2900));
    }
}
