//! Shared user and schema names.
//!
//! Every statement compares the session's user and schema with those of pooled connections
//! (to take one opened for the same user and already in the same schema) and with what the
//! console shows. Names made here are one allocation per distinct name, shared by every
//! session and connection, so those comparisons, made with [`same`], find the same pointer
//! and read no string: with many sessions per event thread, each string read is a cache miss.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

/// Distinct names kept for sharing. Beyond it (a client inventing schema names, say) a name
/// is a fresh allocation: compared by content, as correct and only slower.
const MAX_SHARED: usize = 4096;

static NAMES: LazyLock<Mutex<HashSet<Arc<str>>>> = LazyLock::new(Mutex::default);

/// The shared allocation of `name`. Called when a session logs in, changes user or schema,
/// never per statement.
pub fn intern(name: &str) -> Arc<str> {
    let mut names = NAMES.lock().expect("names lock");
    if let Some(shared) = names.get(name) {
        return shared.clone();
    }
    let new: Arc<str> = name.into();
    if names.len() < MAX_SHARED {
        names.insert(new.clone());
    }
    new
}

/// Whether two names are equal, by pointer first. `Arc<str>`'s own `==` always compares the
/// strings (std takes the pointer shortcut for sized types only): a call into `memcmp` that
/// reads both, for names that are almost always the same allocation.
pub fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

/// [`same`] for names that may be absent (a session without a default schema).
pub fn same_opt(a: Option<&Arc<str>>, b: Option<&Arc<str>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => same(a, b),
        (None, None) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{intern, same, same_opt};
    use std::sync::Arc;

    #[test]
    fn the_same_name_is_one_allocation() {
        let a = intern("names_test_schema");
        let b = intern(&String::from("names_test_schema"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &intern("names_test_other")));
    }

    #[test]
    fn names_compare_by_content_when_not_shared() {
        let shared = intern("names_test_same");
        let fresh: Arc<str> = "names_test_same".into();
        assert!(same(&shared, &shared));
        assert!(same(&shared, &fresh));
        assert!(!same(&shared, &intern("names_test_else")));
        assert!(same_opt(None, None));
        assert!(same_opt(Some(&fresh), Some(&shared)));
        assert!(!same_opt(Some(&shared), None));
        assert!(!same_opt(None, Some(&shared)));
    }
}
