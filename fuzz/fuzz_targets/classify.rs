#![no_main]

use libfuzzer_sys::fuzz_target;
use rwproxy::router::classify::{
    classify, kill_target, replace_connection_id, use_schema, StmtKind,
};

fuzz_target!(|data: &[u8]| {
    let c = classify(data);
    let _ = kill_target(data);
    let _ = replace_connection_id(data, 7);
    // The classifier is a pure function of its input.
    assert_eq!(classify(data), c);
    if let Some(name) = use_schema(data) {
        assert!(!name.is_empty());
        // A well-formed `USE` is classified as one unless something after it is malformed
        // or forms another statement.
        assert!(
            matches!(c.kind, StmtKind::Use | StmtKind::Write),
            "use_schema found {name:?} but kind is {:?}",
            c.kind
        );
    }
});
