//! The admin tables' columns, and the conversions between their rows and the typed structs.
//!
//! Both directions live here so the server side ([`crate::execute`]) and the client side
//! ([`crate::client`]) cannot drift apart. Rows are read by column name, not position, so a
//! client keeps working if a server adds columns.

use std::str::FromStr;

use crate::control::{BackendInfo, BackendStats, DigestInfo, HaStatusInfo, SessionInfo, VrrpInfo};
use crate::resultset::ColumnType::{self, Integer as Int, Text};
use crate::resultset::ResultSet;

pub const HELP_COLUMNS: [&str; 2] = ["command", "description"];
/// Exactly Atlas's four columns, in Atlas's order: scripts parse them positionally.
pub const BACKEND_COLUMNS: [&str; 4] = ["backend_ndx", "address", "state", "type"];
const BACKEND_TYPES: [ColumnType; 4] = [Int, Text, Text, Text];
pub const CLIENT_COLUMNS: [&str; 1] = ["client"];
pub const PWD_COLUMNS: [&str; 2] = ["username", "password"];
pub const VERSION_COLUMNS: [&str; 1] = ["version"];
/// Atlas's (always empty) answer to ADD/REMOVE/SAVE.
pub const STATUS_COLUMNS: [&str; 1] = ["status"];
pub const STATS_COLUMNS: [&str; 12] = [
    "backend_ndx",
    "address",
    "state",
    "type",
    "weight",
    "conns_in_use",
    "conns_idle",
    "queries",
    "errors",
    "avg_latency_us",
    "lag_seconds",
    "reason",
];
const STATS_TYPES: [ColumnType; 12] = [
    Int, Text, Text, Text, Int, Int, Int, Int, Int, Int, Int, Text,
];
pub const SESSION_COLUMNS: [&str; 9] = [
    "id",
    "client",
    "user",
    "db",
    "backend",
    "in_transaction",
    "statement",
    "statement_age_ms",
    "last_gtid",
];
const SESSION_TYPES: [ColumnType; 9] = [Int, Text, Text, Text, Text, Int, Text, Int, Text];
pub const DIGEST_COLUMNS: [&str; 5] = ["digest", "count", "total_time_us", "max_time_us", "rows"];
const DIGEST_TYPES: [ColumnType; 5] = [Text, Int, Int, Int, Int];
pub const VRRP_COLUMNS: [&str; 8] = [
    "instance",
    "interface",
    "vrid",
    "state",
    "priority",
    "effective_priority",
    "virtual_ips",
    "master",
];
const VRRP_TYPES: [ColumnType; 8] = [Text, Text, Int, Text, Int, Int, Text, Text];
pub const HA_STATUS_COLUMNS: [&str; 8] = [
    "instance",
    "vrrp_state",
    "role",
    "db_role",
    "replication",
    "last_action",
    "result",
    "duration_ms",
];
const HA_STATUS_TYPES: [ColumnType; 8] = [Text, Text, Text, Text, Text, Text, Text, Int];
/// MySQL's own `SHOW VARIABLES` columns.
pub const VARIABLE_COLUMNS: [&str; 2] = ["Variable_name", "Value"];

const _: () = assert!(
    BACKEND_TYPES.len() == BACKEND_COLUMNS.len()
        && STATS_TYPES.len() == STATS_COLUMNS.len()
        && SESSION_TYPES.len() == SESSION_COLUMNS.len()
        && DIGEST_TYPES.len() == DIGEST_COLUMNS.len()
        && VRRP_TYPES.len() == VRRP_COLUMNS.len()
        && HA_STATUS_TYPES.len() == HA_STATUS_COLUMNS.len()
);

/// A row that could not be turned into its struct.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad admin row: {0}")]
pub struct RowError(pub String);

/// A typed row of one of the admin tables.
pub trait Table: Sized {
    const COLUMNS: &'static [&'static str];
    /// One per column: the numbers are declared as such (see [`ColumnType`]).
    const TYPES: &'static [ColumnType];
    fn to_row(&self) -> Vec<Option<String>>;
    fn from_row(row: Row<'_>) -> Result<Self, RowError>;
}

/// One row of a [`ResultSet`], with access by column name.
#[derive(Clone, Copy)]
pub struct Row<'a> {
    set: &'a ResultSet,
    values: &'a [Option<String>],
}

impl<'a> Row<'a> {
    pub fn opt(&self, column: &str) -> Result<Option<&'a str>, RowError> {
        let i = self
            .set
            .column_index(column)
            .ok_or_else(|| RowError(format!("no column '{column}' in {:?}", self.set.columns)))?;
        Ok(self.values.get(i).and_then(|v| v.as_deref()))
    }

    pub fn str(&self, column: &str) -> Result<&'a str, RowError> {
        self.opt(column)?
            .ok_or_else(|| RowError(format!("column '{column}' is NULL")))
    }

    pub fn parse<T: FromStr>(&self, column: &str) -> Result<T, RowError> {
        let s = self.str(column)?;
        s.trim()
            .parse()
            .map_err(|_| RowError(format!("column '{column}': cannot parse '{s}'")))
    }

    pub fn parse_opt<T: FromStr>(&self, column: &str) -> Result<Option<T>, RowError> {
        match self.opt(column)? {
            None => Ok(None),
            Some(_) => self.parse(column).map(Some),
        }
    }
}

/// Turn every row of `set` into `T`.
pub fn rows_of<T: Table>(set: &ResultSet) -> Result<Vec<T>, RowError> {
    set.rows
        .iter()
        .map(|values| T::from_row(Row { set, values }))
        .collect()
}

/// A result set holding `items`.
pub fn table_of<T: Table>(items: &[T]) -> ResultSet {
    let mut rs = ResultSet::new(T::COLUMNS.iter().copied()).with_types(T::TYPES);
    for item in items {
        rs.push(item.to_row());
    }
    rs
}

fn some(v: impl ToString) -> Option<String> {
    Some(v.to_string())
}

fn parse_enum<T: FromStr<Err = String>>(row: &Row<'_>, column: &str) -> Result<T, RowError> {
    row.str(column)?.parse().map_err(RowError)
}

fn parse_bool(row: &Row<'_>, column: &str) -> Result<bool, RowError> {
    match row.str(column)? {
        "1" => Ok(true),
        "0" => Ok(false),
        s => Err(RowError(format!("column '{column}': not 0/1: '{s}'"))),
    }
}

impl Table for BackendInfo {
    const COLUMNS: &'static [&'static str] = &BACKEND_COLUMNS;
    const TYPES: &'static [ColumnType] = &BACKEND_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(self.ndx),
            some(&self.address),
            some(self.state),
            some(self.role),
        ]
    }

    /// `weight` is not in Atlas's table; it reads as 1 (the proxy's `stats` has the real one).
    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        Ok(BackendInfo {
            ndx: row.parse("backend_ndx")?,
            address: row.str("address")?.to_string(),
            state: parse_enum(&row, "state")?,
            role: parse_enum(&row, "type")?,
            weight: 1,
        })
    }
}

impl Table for BackendStats {
    const COLUMNS: &'static [&'static str] = &STATS_COLUMNS;
    const TYPES: &'static [ColumnType] = &STATS_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(self.ndx),
            some(&self.address),
            some(self.state),
            some(self.role),
            some(self.weight),
            some(self.conns_in_use),
            some(self.conns_idle),
            some(self.queries),
            some(self.errors),
            some(self.avg_latency_us),
            self.lag_seconds.map(|v| v.to_string()),
            self.reason.clone(),
        ]
    }

    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        Ok(BackendStats {
            ndx: row.parse("backend_ndx")?,
            address: row.str("address")?.to_string(),
            state: parse_enum(&row, "state")?,
            role: parse_enum(&row, "type")?,
            weight: row.parse("weight")?,
            conns_in_use: row.parse("conns_in_use")?,
            conns_idle: row.parse("conns_idle")?,
            queries: row.parse("queries")?,
            errors: row.parse("errors")?,
            avg_latency_us: row.parse("avg_latency_us")?,
            lag_seconds: row.parse_opt("lag_seconds")?,
            reason: row.opt("reason")?.map(str::to_string),
        })
    }
}

impl Table for SessionInfo {
    const COLUMNS: &'static [&'static str] = &SESSION_COLUMNS;
    const TYPES: &'static [ColumnType] = &SESSION_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(self.id),
            some(&self.client),
            some(&self.user),
            self.schema.clone(),
            self.backend.clone(),
            some(u8::from(self.in_transaction)),
            self.statement.clone(),
            self.statement_age_ms.map(|v| v.to_string()),
            self.last_gtid.clone(),
        ]
    }

    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        Ok(SessionInfo {
            id: row.parse("id")?,
            client: row.str("client")?.to_string(),
            user: row.str("user")?.to_string(),
            schema: row.opt("db")?.map(str::to_string),
            backend: row.opt("backend")?.map(str::to_string),
            in_transaction: parse_bool(&row, "in_transaction")?,
            statement: row.opt("statement")?.map(str::to_string),
            statement_age_ms: row.parse_opt("statement_age_ms")?,
            last_gtid: row.opt("last_gtid")?.map(str::to_string),
        })
    }
}

impl Table for DigestInfo {
    const COLUMNS: &'static [&'static str] = &DIGEST_COLUMNS;
    const TYPES: &'static [ColumnType] = &DIGEST_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(&self.digest),
            some(self.count),
            some(self.total_time_us),
            some(self.max_time_us),
            some(self.rows),
        ]
    }

    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        Ok(DigestInfo {
            digest: row.str("digest")?.to_string(),
            count: row.parse("count")?,
            total_time_us: row.parse("total_time_us")?,
            max_time_us: row.parse("max_time_us")?,
            rows: row.parse("rows")?,
        })
    }
}

impl Table for VrrpInfo {
    const COLUMNS: &'static [&'static str] = &VRRP_COLUMNS;
    const TYPES: &'static [ColumnType] = &VRRP_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(&self.instance),
            some(&self.interface),
            some(self.vrid),
            some(&self.state),
            some(self.priority),
            some(self.effective_priority),
            some(self.virtual_ips.join(",")),
            self.master.clone(),
        ]
    }

    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        let vips = row.str("virtual_ips")?;
        Ok(VrrpInfo {
            instance: row.str("instance")?.to_string(),
            interface: row.str("interface")?.to_string(),
            vrid: row.parse("vrid")?,
            state: row.str("state")?.to_string(),
            priority: row.parse("priority")?,
            effective_priority: row.parse("effective_priority")?,
            virtual_ips: vips
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            master: row.opt("master")?.map(str::to_string),
        })
    }
}

impl Table for HaStatusInfo {
    const COLUMNS: &'static [&'static str] = &HA_STATUS_COLUMNS;
    const TYPES: &'static [ColumnType] = &HA_STATUS_TYPES;

    fn to_row(&self) -> Vec<Option<String>> {
        vec![
            some(&self.instance),
            some(&self.vrrp_state),
            some(&self.role),
            some(&self.db_role),
            some(&self.replication),
            self.last_action.clone(),
            self.result.clone(),
            self.duration_ms.map(|d| d.to_string()),
        ]
    }

    fn from_row(row: Row<'_>) -> Result<Self, RowError> {
        Ok(HaStatusInfo {
            instance: row.str("instance")?.to_string(),
            vrrp_state: row.str("vrrp_state")?.to_string(),
            role: row.str("role")?.to_string(),
            db_role: row.str("db_role")?.to_string(),
            replication: row.opt("replication")?.unwrap_or("").to_string(),
            last_action: row.opt("last_action")?.map(str::to_string),
            result: row.opt("result")?.map(str::to_string),
            duration_ms: row.parse_opt("duration_ms")?,
        })
    }
}

/// `(name, value)` pairs for `pwds` and `SHOW VARIABLES`.
pub fn pairs_of(set: &ResultSet, a: &str, b: &str) -> Result<Vec<(String, String)>, RowError> {
    set.rows
        .iter()
        .map(|values| {
            let row = Row { set, values };
            Ok((
                row.str(a)?.to_string(),
                row.opt(b)?.unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// The single-column values of `clients` (or any one-column table).
pub fn column_of(set: &ResultSet, column: &str) -> Result<Vec<String>, RowError> {
    set.rows
        .iter()
        .map(|values| Row { set, values }.str(column).map(str::to_string))
        .collect()
}
