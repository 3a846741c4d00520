//! Where a statement goes. The rules, in one place:
//!
//! | statement | target |
//! |---|---|
//! | `SHOW WARNINGS`/`SHOW ERRORS`/`SHOW COUNT(*) …` | the connection of the previous statement |
//! | `/*master*/` hint | write |
//! | `/*slave*/` hint on a read-only statement kind | read |
//! | `SELECT`/`SHOW`/`DESC`/`EXPLAIN` without any of the flags below | read |
//! | locking reads (`FOR UPDATE`, `LOCK IN SHARE MODE`, `FOR SHARE`), `SELECT … INTO` | write |
//! | `GET_LOCK` & co, `LAST_INSERT_ID()`, `FOUND_ROWS()`/`ROW_COUNT()`, `SQL_CALC_FOUND_ROWS`, sequences, user variables, `SHOW MASTER STATUS` | write |
//! | multi-statements, writes, DDL, `CALL`, anything unknown | write |
//!
//! Session rules (transactions, `autocommit=0`, `LOCK TABLES`, server-held state) are applied
//! by the session, which pins itself to a connection and ignores this decision while pinned.

pub mod classify;

use classify::{Classification, Flags, StmtKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Write,
    Read,
    /// Where the session's previous statement ran (`SHOW WARNINGS` and friends).
    Diagnostics,
}

/// Flags that make a read depend on (or create) state only the write backend's connection has.
const NEEDS_PRIMARY: Flags = Flags::LOCKING_READ
    .union(Flags::SELECT_INTO)
    .union(Flags::USER_VAR_READ)
    .union(Flags::USER_VAR_WRITE)
    .union(Flags::GET_LOCK)
    .union(Flags::LAST_INSERT_ID)
    .union(Flags::FOUND_ROWS)
    .union(Flags::CALC_FOUND_ROWS)
    .union(Flags::SEQUENCE)
    .union(Flags::MULTI_STATEMENT)
    .union(Flags::MASTER_STATUS);

pub fn target(c: &Classification) -> Target {
    if c.flags.contains(Flags::DIAGNOSTICS) {
        return Target::Diagnostics;
    }
    if c.flags.contains(Flags::HINT_MASTER) {
        return Target::Write;
    }
    let read_kind = matches!(c.kind, StmtKind::Read | StmtKind::Begin { read_only: true });
    if read_kind && c.flags.contains(Flags::HINT_SLAVE) {
        return Target::Read;
    }
    if read_kind && !c.flags.intersects(NEEDS_PRIMARY) {
        Target::Read
    } else {
        Target::Write
    }
}
