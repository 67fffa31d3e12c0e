//! What every request checks (the key it presents, the kill switches), cached in memory.
//! The cache is dropped when the store's control generation moves: at once for changes made
//! in this process, and for changes made elsewhere (the CLI) within [`FRESHNESS`], which
//! bounds how often the generation is read. A request thus costs no database read while
//! nothing changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use missive_store::{ApiKey, KillSwitch, Store, WorkspaceLimits};

/// How stale a change made by another process can be when a request is checked.
pub const FRESHNESS: Duration = Duration::from_millis(2);

/// Keys remembered at most (only keys that exist are remembered).
const MAX_KEYS: usize = 100_000;

type KillSwitches = Vec<KillSwitch>;
/// Run-time limits by workspace id.
pub type LimitsById = HashMap<String, WorkspaceLimits>;

struct Snapshot {
    generation: u64,
    local: u64,
    checked: Instant,
    keys: HashMap<String, ApiKey>,
    /// The same keys by id, for requests that run after their key was checked (batches).
    by_id: HashMap<String, ApiKey>,
    kill_switches: Option<Arc<KillSwitches>>,
    workspace_limits: Option<Arc<LimitsById>>,
}

pub struct Controls {
    store: Arc<dyn Store>,
    snapshot: Mutex<Option<Snapshot>>,
}

impl Controls {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            snapshot: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Snapshot>> {
        match self.snapshot.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The snapshot, dropped first if the controls changed. Returns the generation it is for.
    fn current(&self) -> Result<(MutexGuard<'_, Option<Snapshot>>, u64), missive_store::Error> {
        let local = self.store.local_control_changes();
        {
            let guard = self.lock();
            if let Some(s) = guard.as_ref() {
                if s.local == local && s.checked.elapsed() < FRESHNESS {
                    let generation = s.generation;
                    return Ok((guard, generation));
                }
            }
        }
        let generation = self.store.control_generation()?;
        let mut guard = self.lock();
        match guard.as_mut() {
            Some(s) if s.generation == generation && s.local == local => s.checked = Instant::now(),
            _ => {
                *guard = Some(Snapshot {
                    generation,
                    local,
                    checked: Instant::now(),
                    keys: HashMap::new(),
                    by_id: HashMap::new(),
                    kill_switches: None,
                    workspace_limits: None,
                })
            }
        }
        Ok((guard, generation))
    }

    /// The key whose secret hashes to `hash`, whatever its status.
    pub fn find_key(&self, hash: &str) -> Result<Option<ApiKey>, missive_store::Error> {
        self.cached_key(|s| &mut s.keys, hash, || self.store.find_api_key(hash))
    }

    /// The key with this id, whatever its status.
    pub fn key_by_id(&self, id: &str) -> Result<Option<ApiKey>, missive_store::Error> {
        self.cached_key(|s| &mut s.by_id, id, || self.store.api_key(id))
    }

    /// A key from one of the snapshot's maps, read from the store (and remembered, if the
    /// snapshot is still current) when the map lacks it.
    fn cached_key(
        &self,
        map: fn(&mut Snapshot) -> &mut HashMap<String, ApiKey>,
        lookup: &str,
        load: impl FnOnce() -> Result<Option<ApiKey>, missive_store::Error>,
    ) -> Result<Option<ApiKey>, missive_store::Error> {
        let generation = {
            let (mut guard, generation) = self.current()?;
            if let Some(key) = guard.as_mut().and_then(|s| map(s).get(lookup)) {
                return Ok(Some(key.clone()));
            }
            generation
        };
        let key = load()?;
        if let Some(key) = &key {
            let mut guard = self.lock();
            if let Some(s) = guard.as_mut().filter(|s| s.generation == generation) {
                let keys = map(s);
                if keys.len() < MAX_KEYS {
                    keys.insert(lookup.to_owned(), key.clone());
                }
            }
        }
        Ok(key)
    }

    /// A list the snapshot keeps whole, read from the store when the snapshot lacks it.
    fn cached<T>(
        &self,
        slot: fn(&mut Snapshot) -> &mut Option<Arc<T>>,
        load: impl FnOnce() -> Result<T, missive_store::Error>,
    ) -> Result<Arc<T>, missive_store::Error> {
        let (mut guard, generation) = self.current()?;
        if let Some(cached) = guard.as_mut().and_then(|s| slot(s).clone()) {
            return Ok(cached);
        }
        drop(guard);
        let loaded = Arc::new(load()?);
        let mut guard = self.lock();
        if let Some(s) = guard.as_mut().filter(|s| s.generation == generation) {
            *slot(s) = Some(Arc::clone(&loaded));
        }
        Ok(loaded)
    }

    /// Whether a switch covers this workspace and any of the models.
    pub fn is_killed(
        &self,
        workspace_id: &str,
        models: &[&str],
    ) -> Result<bool, missive_store::Error> {
        let switches = self.cached(|s| &mut s.kill_switches, || self.store.kill_switches())?;
        Ok(switches
            .iter()
            .any(|switch| switch.covers(workspace_id, models)))
    }

    /// The limits set for a workspace at run time (the console), if any.
    pub fn workspace_limits(
        &self,
        workspace_id: &str,
    ) -> Result<WorkspaceLimits, missive_store::Error> {
        let all = self.cached(
            |s| &mut s.workspace_limits,
            || Ok(self.store.workspace_limits()?.into_iter().collect()),
        )?;
        Ok(all.get(workspace_id).copied().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use missive_store::{hash_key, KeyKind, KeyStatus, SqliteStore};

    use super::*;

    #[test]
    fn changes_here_show_at_once_and_changes_elsewhere_within_the_freshness_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missive.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let controls = Controls::new(Arc::clone(&store) as Arc<dyn Store>);
        let key = store.create_api_key("k", KeyKind::Standard, None).unwrap();
        let hash = hash_key(&key.secret);
        assert!(controls.find_key(&hash).unwrap().unwrap().usable());
        // Through this process's handle: seen by the very next lookup.
        store
            .update_api_key(&key.key.id, None, Some(KeyStatus::Inactive))
            .unwrap();
        assert!(!controls.find_key(&hash).unwrap().unwrap().usable());
        // Through another handle, as the CLI in another process.
        let cli = SqliteStore::open(&path).unwrap();
        cli.update_api_key(&key.key.id, None, Some(KeyStatus::Active))
            .unwrap();
        cli.set_kill_switch(None, Some("m"), true).unwrap();
        std::thread::sleep(FRESHNESS * 2);
        assert!(controls.find_key(&hash).unwrap().unwrap().usable());
        assert!(controls.is_killed("w", &["x", "m"]).unwrap());
        assert!(!controls.is_killed("w", &["x"]).unwrap());
    }
}
