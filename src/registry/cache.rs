//! Cycle-long memo tables where concurrent callers for one key share a single fetch.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

/// `key → value`, filled at most once per key; callers that arrive while the first one is
/// fetching wait for its result instead of sending their own request.
pub(crate) struct SingleFlight<K, V> {
    cells: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { cells: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> SingleFlight<K, V> {
    fn cell(&self, key: &K) -> Arc<OnceCell<V>> {
        self.cells.lock().unwrap().entry(key.clone()).or_default().clone()
    }

    /// The value for `key`, computing it with `init` if nobody has; errors inside `V` are kept
    /// like any value (one failure per key per run).
    pub async fn get_or_init<F, Fut>(&self, key: &K, init: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        self.cell(key).get_or_init(init).await.clone()
    }

    /// Like [`Self::get_or_init`], but an error is returned to this caller and not kept.
    pub async fn get_or_try_init<E, F, Fut>(&self, key: &K, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.cell(key).get_or_try_init(init).await.cloned()
    }

    /// Forgets every value (a new cycle asks again).
    pub fn clear(&self) {
        self.cells.lock().unwrap().clear();
    }

    /// Sets `key` (a value known from elsewhere: a previous run).
    pub fn insert(&self, key: K, value: V) {
        let cell = OnceCell::new();
        let _ = cell.set(value);
        self.cells.lock().unwrap().insert(key, Arc::new(cell));
    }

    /// Every value known.
    pub fn snapshot(&self) -> HashMap<K, V> {
        self.cells.lock().unwrap().iter().filter_map(|(k, c)| Some((k.clone(), c.get()?.clone()))).collect()
    }

    /// The value for `key` if it is already known.
    pub fn peek(&self, key: &K) -> Option<V> {
        self.cells.lock().unwrap().get(key).and_then(|c| c.get().cloned())
    }
}
