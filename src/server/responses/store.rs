//! The response store behind `store: true`: finished responses kept in memory, so that
//! `previous_response_id` continues their conversation and `GET /v1/responses/{id}` returns
//! them. Bounded by the bytes of what it holds (`--response-store-mb`, default
//! [`DEFAULT_STORE_MB`]); the least recently used responses go first. Nothing survives a
//! restart.

use std::sync::Mutex;

use indexmap::IndexMap;
use serde_json::Value;

use crate::openai::responses::InputItem;

/// The default bound of the store, in MiB.
pub const DEFAULT_STORE_MB: usize = 64;

/// One stored response and the conversation it ended (input items, then its output).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The response object as it was answered.
    pub response: Value,
    /// The conversation: every item that led to it, then its output items.
    pub items: Vec<InputItem>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Least recently used first.
    entries: IndexMap<String, (Stored, usize)>,
    bytes: usize,
}

/// A bytes-bounded LRU of stored responses, shared by the server's handlers.
#[derive(Debug)]
pub struct ResponseStore {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

impl ResponseStore {
    /// A store holding at most `max_bytes` of responses (0 keeps nothing).
    pub fn new(max_bytes: usize) -> Self {
        ResponseStore {
            max_bytes,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `stored` under `id`, dropping the least recently used responses to make room.
    /// A response larger than the whole bound is not kept.
    pub fn insert(&self, id: String, stored: Stored) {
        let size = json_size(&stored.response) + json_size(&stored.items) + id.len();
        if size > self.max_bytes {
            tracing::warn!(
                id,
                size,
                "response not stored: larger than --response-store-mb"
            );
            return;
        }
        let mut inner = self.lock();
        if let Some((_, old)) = inner.entries.shift_remove(&id) {
            inner.bytes -= old;
        }
        while inner.bytes + size > self.max_bytes {
            match inner.entries.shift_remove_index(0) {
                Some((_, (_, freed))) => inner.bytes -= freed,
                None => break,
            }
        }
        inner.bytes += size;
        inner.entries.insert(id, (stored, size));
    }

    /// The response stored under `id` (now the most recently used), if any.
    pub fn get(&self, id: &str) -> Option<Stored> {
        let mut inner = self.lock();
        let (key, entry) = inner.entries.shift_remove_entry(id)?;
        let stored = entry.0.clone();
        inner.entries.insert(key, entry);
        Some(stored)
    }

    /// Forgets the response stored under `id`; whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        let mut inner = self.lock();
        match inner.entries.shift_remove(id) {
            Some((_, size)) => {
                inner.bytes -= size;
                true
            }
            None => false,
        }
    }

    /// Responses held now.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held now (the JSON size of what is stored).
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

fn json_size<T: serde::Serialize>(v: &T) -> usize {
    serde_json::to_vec(v).map_or(0, |b| b.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(text: &str) -> Stored {
        Stored {
            response: json!({"text": text}),
            items: vec![],
        }
    }

    #[test]
    fn bounded_by_bytes_least_recently_used_first() {
        let one = json_size(&json!({"text": "aaaa"})) + json_size(&Vec::<InputItem>::new()) + 2;
        let store = ResponseStore::new(3 * one);
        for id in ["r1", "r2", "r3"] {
            store.insert(id.into(), stored("aaaa"));
        }
        assert_eq!(store.len(), 3);
        assert_eq!(store.bytes(), 3 * one);
        // r1 used: r2 is now the least recently used and goes first.
        assert!(store.get("r1").is_some());
        store.insert("r4".into(), stored("aaaa"));
        assert!(store.get("r2").is_none());
        assert!(store.get("r1").is_some() && store.get("r3").is_some());
        assert!(store.bytes() <= 3 * one);
        assert!(store.remove("r1"));
        assert!(!store.remove("r1"));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn zero_keeps_nothing_and_oversized_entries_are_skipped() {
        let store = ResponseStore::new(0);
        store.insert("r".into(), stored("x"));
        assert!(store.is_empty());
        let store = ResponseStore::new(10);
        store.insert("r".into(), stored("much longer than ten bytes"));
        assert!(store.is_empty());
    }
}
