#![no_main]

use libfuzzer_sys::fuzz_target;
use rwproxy::router::cache::classify_shaped;
use rwproxy::router::classify::{
    classify, diagnostics_targets, kill_target, replace_session_fns, use_schema, StmtKind,
};
use rwproxy::router::multibyte::Multibyte;
use rwproxy::stats::digest::key_of;

fuzz_target!(|data: &[u8]| {
    let c = classify(data);
    let _ = kill_target(data);
    let _ = replace_session_fns(data, data, |f| Some(f.literal(-7)));
    // A gbk session's statements are read through a copy of the same length.
    let gbk = Multibyte::Gbk.lexable(data);
    assert_eq!(gbk.len(), data.len());
    let _ = classify(&gbk);
    let _ = replace_session_fns(data, &gbk, |f| Some(f.literal(-7)));
    // The classifier is a pure function of its input.
    assert_eq!(classify(data), c);
    // The hot path looks classifications up by statement shape, in a table that lives across
    // the fuzzer's inputs: whatever an earlier input of the same shape left there, each
    // answer must be the classifier's. A variant with other digits shares this input's shape
    // whenever those digits were literals.
    // (No shape is noted as refused by a replica here, so none carries that note.)
    let now = std::time::Instant::now();
    let mut text = Vec::new();
    let shape = key_of(data, &mut text);
    assert_eq!(classify_shaped(data, shape, &text, None, now), c);
    let variant: Vec<u8> = data
        .iter()
        .map(|&b| if b.is_ascii_digit() { b'7' } else { b })
        .collect();
    let shape = key_of(&variant, &mut text);
    assert_eq!(classify_shaped(&variant, shape, &text, None, now), classify(&variant));
    // The proxy copies what it names only for a statement classified as one.
    if let Some(targets) = diagnostics_targets(data) {
        assert!(!targets.is_empty());
        assert_eq!(c.kind, StmtKind::GetDiagnostics);
    }
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
