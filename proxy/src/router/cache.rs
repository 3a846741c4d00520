//! Classifications remembered by statement shape.
//!
//! Every `COM_QUERY` is normalised for its digest anyway (literals out, whitespace collapsed);
//! statements that differ only in literal values — the bulk of OLTP traffic, a few shapes
//! sent over and over — classify the same, so the classification of a shape is looked up
//! instead of lexing the statement again (callgrind: the classifier was about a sixth of the
//! instructions of a proxied point select).
//!
//! A shape is remembered only when its text says everything the classifier reads: nothing but
//! literal values and whitespace were taken out (no comment: hints and executable comments
//! live there; nothing unterminated) and there is no `@` outside literals, the one place where
//! a literal's kind changes how the classifier reads what follows (`'u'@host` against
//! `5 @var`). A hit compares the whole text, not just its hash, so a colliding statement can
//! never borrow another's route.
//!
//! Apart from the classifications, each thread notes the shapes a replica lately refused a
//! read of for being one (a stored function that writes, a table the replica lacks), in
//! which schema: for [`REPLICA_RECHECK`] after that their reads in that schema go straight
//! to the write backend, not to a replica first at a wasted round trip. Any shape of up to
//! `MAX_TEXT` bytes takes a note, also one the classifications keep no entry for (a comment,
//! an `@`), and a note does not go when another shape takes its shape's slot. Per event
//! thread, as the classifications: each thread's sessions find it out once.

use super::classify::{classify, Classification, Flags};
use super::REPLICA_RECHECK;
use crate::session::names;
use crate::stats::digest::Shape;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

/// Slots per thread, direct-mapped by hash: OLTP applications send tens to hundreds of
/// shapes; a collision only costs a classification.
const SLOTS: usize = 1024;
/// Longer shapes (generated reports, long IN lists of expressions) are classified each time:
/// their own size dwarfs the lexing, and they would crowd out the small hot ones. (A
/// multi-row insert of literals is short: its rows fold into one, see `digest::normalise`.)
const MAX_TEXT: usize = 512;
/// Refusal notes kept per thread, the oldest given up first: refusals are rare, and one
/// that recurs is noted again.
const MAX_NOTES: usize = 64;

struct Slot {
    key: u64,
    text: Box<[u8]>,
    class: Classification,
}

/// A replica refused a read of shape `key` (normalised `text`) for being one at `at`, with
/// `schema` the default one (another tenant's schema may well have the table).
struct Note {
    key: u64,
    text: Box<[u8]>,
    schema: Option<Arc<str>>,
    at: Instant,
}

impl Note {
    fn is(&self, key: u64, text: &[u8], schema: Option<&Arc<str>>) -> bool {
        self.key == key && *self.text == *text && names::same_opt(self.schema.as_ref(), schema)
    }

    /// Still sends its shape's reads to the write backend at `now`.
    fn live_at(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.at) < REPLICA_RECHECK
    }
}

thread_local! {
    /// Per thread, so lookups take no lock: each event thread serves its own sessions.
    static SHAPES: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
    static NOTES: RefCell<Vec<Note>> = const { RefCell::new(Vec::new()) };
    /// Whether `NOTES` holds any: false nearly always, and a plain flag is all the common
    /// statement reads (`NOTES`, which needs dropping, costs some 60 instructions a look).
    static NOTED: Cell<bool> = const { Cell::new(false) };
}

/// The high bits: FxHash's low bits are its weakest.
fn slot_of(key: u64) -> usize {
    (key >> 54) as usize % SLOTS
}

/// [`classify`] of `sql`, whose digest shape is `shape` with normalised text `text`, with
/// [`Flags::REPLICA_REFUSED`] when a replica refused that shape in `schema` less than
/// [`REPLICA_RECHECK`] before `now`.
pub fn classify_shaped(
    sql: &[u8],
    shape: Shape,
    text: &[u8],
    schema: Option<&Arc<str>>,
    now: Instant,
) -> Classification {
    let mut class = classify_cached(sql, shape, text);
    if refused_lately(shape.key, text, schema, now) {
        class.flags |= Flags::REPLICA_REFUSED;
    }
    class
}

fn classify_cached(sql: &[u8], shape: Shape, text: &[u8]) -> Classification {
    if !shape.literal_only || text.len() > MAX_TEXT || memchr::memchr(b'@', text).is_some() {
        return classify(sql);
    }
    SHAPES.with_borrow_mut(|slots| {
        if slots.is_empty() {
            slots.resize_with(SLOTS, || None);
        }
        let slot = &mut slots[slot_of(shape.key)];
        if let Some(s) = slot {
            if s.key == shape.key && *s.text == *text {
                return s.class;
            }
        }
        let class = classify(sql);
        if class.flags.contains(Flags::BY_LITERAL) {
            return class;
        }
        *slot = Some(Slot {
            key: shape.key,
            text: text.into(),
            class,
        });
        class
    })
}

/// Whether a replica refused shape `key` in `schema` less than [`REPLICA_RECHECK`] before
/// `now`; notes older than that are dropped.
fn refused_lately(key: u64, text: &[u8], schema: Option<&Arc<str>>, now: Instant) -> bool {
    if !NOTED.get() {
        return false;
    }
    NOTES.with_borrow_mut(|notes| {
        notes.retain(|n| n.live_at(now));
        NOTED.set(!notes.is_empty());
        notes.iter().any(|n| n.is(key, text, schema))
    })
}

/// A replica refused a read of the shape `key` with normalised text `text`, in `schema`, at
/// `at` for being one. A statement too long for the classification cache takes no note
/// either: notes hold their text.
pub fn note_replica_refused(key: u64, text: &[u8], schema: Option<Arc<str>>, at: Instant) {
    if text.len() > MAX_TEXT {
        return;
    }
    NOTES.with_borrow_mut(|notes| {
        // Sessions of one thread may note a shape out of the order their commands came in.
        if let Some(n) = notes.iter_mut().find(|n| n.is(key, text, schema.as_ref())) {
            n.at = n.at.max(at);
            return;
        }
        notes.retain(|n| n.live_at(at));
        if notes.len() == MAX_NOTES {
            notes.remove(0);
        }
        notes.push(Note {
            key,
            text: text.into(),
            schema,
            at,
        });
        NOTED.set(true);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::digest::key_of;

    fn through_cache(sql: &str) -> Classification {
        let mut text = Vec::new();
        let shape = key_of(sql.as_bytes(), &mut text);
        classify_shaped(sql.as_bytes(), shape, &text, None, Instant::now())
    }

    #[test]
    fn hits_answer_what_the_classifier_would() {
        for (first, second) in [
            ("SELECT c FROM t WHERE id=1", "SELECT c FROM t WHERE id=2"),
            ("SELECT 1 FOR UPDATE", "SELECT 'x' FOR UPDATE"),
            ("SET autocommit=1", "SET autocommit=0"),
            ("SELECT 'a'", "SELECT 'a"),
            ("SELECT 1 UPDATE", "SELECT 1e-FOR UPDATE"),
            ("SELECT 1 --\x01 FOR UPDATE", "SELECT 1 --\x01\nFOR UPDATE"),
            ("SELECT 'a'@b", "SELECT 5@b"),
            ("SELECT 1", "/*master*/ SELECT 1"),
            ("SELECT 1", "/*!50000 SELECT 1 FOR UPDATE*/"),
            (
                "SHOW VARIABLES LIKE 'gtid_binlog_pos'",
                "SHOW VARIABLES LIKE 'autocommit'",
            ),
            (
                "SHOW VARIABLES LIKE 'autocommit'",
                "SHOW VARIABLES LIKE 'gtid_binlog_pos'",
            ),
        ] {
            for sql in [first, second] {
                assert_eq!(through_cache(sql), classify(sql.as_bytes()), "{sql:?}");
            }
        }
    }

    #[test]
    fn a_refusal_is_remembered_for_a_while_by_its_shape_and_schema() {
        let sql = "SELECT f(1)";
        let mut text = Vec::new();
        let shape = key_of(sql.as_bytes(), &mut text);
        let (app, other_app): (Arc<str>, Arc<str>) = ("app".into(), "other".into());
        let t0 = Instant::now();
        let refused = |sql: &str, schema: Option<&Arc<str>>, at: Instant| {
            classify_shaped(sql.as_bytes(), shape, &text, schema, at)
                .flags
                .contains(Flags::REPLICA_REFUSED)
        };
        assert!(!refused(sql, Some(&app), t0));
        note_replica_refused(shape.key, &text, Some(app.clone()), t0);
        // Another literal, the same shape.
        let other = "SELECT f(2)";
        let mut other_text = Vec::new();
        assert_eq!(key_of(other.as_bytes(), &mut other_text).key, shape.key);
        assert_eq!(other_text, text);
        assert!(refused(other, Some(&"app".into()), t0));
        assert!(!refused(other, Some(&other_app), t0));
        assert!(!refused(other, None, t0));
        assert!(refused(sql, Some(&app), t0 + REPLICA_RECHECK / 2));
        assert!(!refused(sql, Some(&app), t0 + REPLICA_RECHECK));
        // Forgotten once expired.
        assert!(!refused(sql, Some(&app), t0));
        // Any shape takes one, also one the classifications keep no entry for (an `@`).
        let at_sql = b"SELECT @@server_id, f(1)";
        let mut at_text = Vec::new();
        let at_shape = key_of(at_sql, &mut at_text);
        let noted = |at: Instant| {
            classify_shaped(at_sql, at_shape, &at_text, None, at)
                .flags
                .contains(Flags::REPLICA_REFUSED)
        };
        assert!(!noted(t0));
        note_replica_refused(at_shape.key, &at_text, None, t0);
        assert!(noted(t0));
        // Notes are kept apart from the classifications: a shape's note outlives its slot,
        // here taken by another shape of the same slot.
        let rival = (0..)
            .map(|i| format!("SELECT c{i} FROM t"))
            .find(|r| slot_of(key_of(r.as_bytes(), &mut Vec::new()).key) == slot_of(shape.key))
            .expect("some shape shares the slot");
        note_replica_refused(shape.key, &text, None, t0);
        through_cache(&rival);
        assert!(refused(sql, None, t0 + REPLICA_RECHECK / 2));
        assert!(noted(t0 + REPLICA_RECHECK / 2));
        // Only the most recent notes are kept.
        for i in 0..MAX_NOTES {
            let mut t = Vec::new();
            let k = key_of(format!("SELECT h{i}(1)").as_bytes(), &mut t).key;
            note_replica_refused(k, &t, None, t0);
        }
        assert!(!noted(t0));
    }

    struct XorShift(u64);
    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    /// Statements built from code fragments with literal slots; each template is filled
    /// twice with different literals and spacing, run through the cache one after the other,
    /// and both answers must be the classifier's.
    #[test]
    fn literal_variants_never_borrow_a_wrong_class() {
        const CODE: &[&str] = &[
            "SELECT",
            "FOR",
            "UPDATE",
            "SHARE",
            "LOCK",
            "IN",
            "MODE",
            "INTO",
            "SET",
            "autocommit",
            "@@autocommit",
            "@@warning_count",
            "@v",
            "GET_LOCK",
            "LAST_INSERT_ID",
            "FOUND_ROWS",
            "SQL_CALC_FOUND_ROWS",
            "(",
            ")",
            ",",
            "=",
            ":=",
            ";",
            "-",
            "--",
            "#",
            "/*",
            "*/",
            "/*!",
            "@",
            "`",
            "`x`",
            "WITH",
            "SHOW",
            "COUNT",
            "WARNINGS",
            "VARIABLES",
            "GLOBAL_VARIABLES",
            "BEGIN",
            "START",
            "TRANSACTION",
            "READ",
            "ONLY",
            "CREATE",
            "TEMPORARY",
            "t",
            "e",
            "x",
            ".",
            "NEXT",
            "VALUE",
            "\\",
            "\n",
            "\x01",
        ];
        const LITERALS: &[&str] = &[
            "1",
            "42",
            "1.5",
            "1e-5",
            "1e+9",
            "0x1F",
            "'a'",
            "\"b\"",
            "'it''s'",
            "'a\\'b'",
            "'",
            "\"",
            "'@'",
            "'--'",
            "'#'",
            "'/*'",
            "1e",
            "9e-",
            "x'41'",
            "'gtid_binlog_pos'",
            "'gtid%'",
        ];
        const SPACE: &[&str] = &["", " ", "  ", "\t", "\n", "\r\n"];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut hits = 0;
        for _ in 0..200_000 {
            let template: Vec<Option<&str>> = (0..1 + rng.below(8))
                .map(|_| (rng.below(3) > 0).then(|| CODE[rng.below(CODE.len())]))
                .collect();
            let fill = |rng: &mut XorShift| {
                let mut s = String::new();
                for part in &template {
                    s.push_str(SPACE[rng.below(SPACE.len())]);
                    s.push_str(part.unwrap_or_else(|| LITERALS[rng.below(LITERALS.len())]));
                }
                s
            };
            let (a, b) = (fill(&mut rng), fill(&mut rng));
            let (mut ta, mut tb) = (Vec::new(), Vec::new());
            let shape = key_of(a.as_bytes(), &mut ta);
            key_of(b.as_bytes(), &mut tb);
            if shape.literal_only && ta == tb {
                hits += 1;
            }
            assert_eq!(through_cache(&a), classify(a.as_bytes()), "{a:?}");
            assert_eq!(
                through_cache(&b),
                classify(b.as_bytes()),
                "{b:?} after {a:?}"
            );
        }
        assert!(hits > 10_000, "only {hits} pairs shared a shape");
    }
}
