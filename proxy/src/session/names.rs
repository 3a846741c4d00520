//! Shared user and schema names.
//!
//! Every statement compares the session's user and schema with those of pooled connections
//! (to take one opened for the same user and already in the same schema) and with what the
//! console shows. Names made here are one allocation per distinct name, shared by every
//! session and connection, so those comparisons find the same pointer and read no string:
//! with many sessions per event thread, each string read is a cache miss.

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

#[cfg(test)]
mod tests {
    use super::intern;
    use std::sync::Arc;

    #[test]
    fn the_same_name_is_one_allocation() {
        let a = intern("names_test_schema");
        let b = intern(&String::from("names_test_schema"));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &intern("names_test_other")));
    }
}
