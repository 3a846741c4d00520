//! The control plane: what the admin console asks of the running proxy.
//!
//! The proxy implements [`ControlPlane`] in-process; `ha` and scripts reach the same operations
//! remotely through [`crate::client::AdminClient`]. Methods are synchronous on purpose: the
//! admin console answers one statement at a time, and anything slow (draining a backend,
//! writing the config file) is the implementation's business, started from here and finished
//! in its own tasks.

use std::fmt;
use std::str::FromStr;

use crate::AdminError;

/// Health/administrative state of a backend, spelled as Atlas prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    Up,
    Down,
    /// Taken out of service by `SET OFFLINE`; the health monitor leaves it alone.
    Offline,
    /// Not probed yet (Atlas puts a backend here after `SET ONLINE`).
    Unknown,
    /// A replica that answers but is kept out of the read pool by the health monitor
    /// (replication stopped or lagging); `stats` says why.
    Excluded,
}

impl BackendState {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Offline => "offline",
            BackendState::Unknown => "unknown",
            BackendState::Excluded => "excluded",
        }
    }
}

impl fmt::Display for BackendState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "up" => Ok(BackendState::Up),
            "down" => Ok(BackendState::Down),
            "offline" => Ok(BackendState::Offline),
            "unknown" => Ok(BackendState::Unknown),
            "excluded" => Ok(BackendState::Excluded),
            _ => Err(format!("unknown backend state '{s}'")),
        }
    }
}

/// Atlas's `type` column: `rw` for the write backend (master), `ro` for read replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendRole {
    ReadWrite,
    ReadOnly,
}

impl BackendRole {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendRole::ReadWrite => "rw",
            BackendRole::ReadOnly => "ro",
        }
    }
}

impl fmt::Display for BackendRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BackendRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rw" => Ok(BackendRole::ReadWrite),
            "ro" => Ok(BackendRole::ReadOnly),
            _ => Err(format!("unknown backend type '{s}'")),
        }
    }
}

/// One row of `SELECT * FROM backends`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    /// 1-based position in the list (masters first), the number `SET OFFLINE n` and
    /// `REMOVE BACKEND n` take. It changes when a backend before it is removed, as in Atlas.
    pub ndx: usize,
    /// `host:port` as configured (`[v6]:port` for IPv6).
    pub address: String,
    pub state: BackendState,
    pub role: BackendRole,
    /// Read weight; masters report 1. Not shown in `backends` (Atlas's four columns are
    /// parsed positionally by existing scripts) but in `stats`.
    pub weight: u32,
}

/// The password given to `ADD PWD` (plain) or `ADD ENPWD` (Atlas's DES+base64 form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserPassword {
    Plain(String),
    Encrypted(String),
}

/// One row of `SELECT * FROM stats`: live per-backend numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendStats {
    pub ndx: usize,
    pub address: String,
    pub state: BackendState,
    pub role: BackendRole,
    pub weight: u32,
    /// Backend connections currently lent to client sessions.
    pub conns_in_use: u64,
    /// Backend connections pooled and idle.
    pub conns_idle: u64,
    pub queries: u64,
    pub errors: u64,
    /// Mean statement latency in microseconds (the implementation picks the window).
    pub avg_latency_us: u64,
    /// Replication lag in seconds; `None` for the master or when unknown.
    pub lag_seconds: Option<u64>,
    /// Why the backend is out of service (`down`, `excluded`), as the monitor saw it.
    pub reason: Option<String>,
}

/// One row of `SELECT * FROM sessions`: a client connected to the proxy port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub id: u64,
    /// Client `ip:port`.
    pub client: String,
    pub user: String,
    /// Default schema, if any.
    pub schema: Option<String>,
    /// Address of the backend the session holds right now, if it holds one.
    pub backend: Option<String>,
    pub in_transaction: bool,
    /// The statement running now, if any.
    pub statement: Option<String>,
    /// How long `statement` has been running, in milliseconds.
    pub statement_age_ms: Option<u64>,
    /// The GTID the session's last write committed as: a replica that has applied it shows
    /// the session its own writes.
    pub last_gtid: Option<String>,
}

/// One row of `SELECT * FROM digests`: statements grouped by normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestInfo {
    /// The statement with literals replaced by `?`.
    pub digest: String,
    pub count: u64,
    pub total_time_us: u64,
    pub max_time_us: u64,
    /// Rows sent or affected, summed.
    pub rows: u64,
}

/// One row of `SELECT * FROM vrrp`: a VRRP instance this process runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInfo {
    pub instance: String,
    pub interface: String,
    pub vrid: u8,
    /// keepalived's spelling: `MASTER`, `BACKUP`, `FAULT`, `INIT`, `STOP`.
    pub state: String,
    /// Configured priority.
    pub priority: u8,
    /// Priority after track-script weights.
    pub effective_priority: u8,
    pub virtual_ips: Vec<String>,
    /// Address of the current master as last heard, if known.
    pub master: Option<String>,
}

/// One row of `SELECT * FROM ha_status`: the built-in failover actions of one VRRP instance
/// and what they left the local database in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaStatusInfo {
    pub instance: String,
    /// keepalived's spelling of the instance's state.
    pub vrrp_state: String,
    /// What this node's database should be: `primary`, `replica`, or `none` (held read-only
    /// until a human acts, e.g. errant transactions).
    pub role: String,
    /// What the database is, as last probed: `primary` (writable), `replica`, `read-only`
    /// (neither writable nor replicating) or `unreachable`.
    pub db_role: String,
    /// Replication state in words (`running, 0 s behind`, the thread errors…); empty on a
    /// primary.
    pub replication: String,
    /// `promote`, `rejoin` or `read_only`; `None` before the first action.
    pub last_action: Option<String>,
    /// `ok: …`, `degraded: …`, `errant: …` or `error: …`: the outcome and, when it failed, why.
    pub result: Option<String>,
    pub duration_ms: Option<u64>,
}

/// Everything the admin console can ask of the proxy.
///
/// Index arguments are the 1-based `backend_ndx` of [`ControlPlane::backends`]; an index out of
/// range should be answered with [`AdminError::NoSuchBackend`].
pub trait ControlPlane: Send + Sync {
    /// All backends, masters first, `ndx` numbered from 1.
    fn backends(&self) -> Vec<BackendInfo>;
    /// Stop sending new work to a backend; returns its row after the change.
    fn set_offline(&self, ndx: usize) -> Result<BackendInfo, AdminError>;
    /// Hand a backend back to the health monitor; returns its row after the change.
    fn set_online(&self, ndx: usize) -> Result<BackendInfo, AdminError>;
    /// `address` is `host:port` (IPv6 as `[addr]:port`), already validated.
    fn add_backend(&self, address: &str, role: BackendRole, weight: u32) -> Result<(), AdminError>;
    fn remove_backend(&self, ndx: usize) -> Result<(), AdminError>;
    /// The read-only backend at `address` (`host:port` as `add_backend` takes it), found and
    /// removed in one step.
    fn remove_reader(&self, address: &str) -> Result<(), AdminError>;

    /// Allowed client addresses (Atlas `client-ips`); empty means everyone.
    fn clients(&self) -> Vec<String>;
    /// `ip` is a `client-ips` entry as the operator wrote it, not validated: the
    /// implementation holds the config's rules for entries, and answers a bad one with
    /// [`AdminError::Syntax`].
    fn add_client(&self, ip: &str) -> Result<(), AdminError>;
    /// `ip` as in `add_client`; it matches the entries that admit the same addresses.
    fn remove_client(&self, ip: &str) -> Result<(), AdminError>;

    /// Application users as `(name, Atlas-encrypted password)`.
    fn users(&self) -> Vec<(String, String)>;
    fn add_user(&self, name: &str, password: UserPassword) -> Result<(), AdminError>;
    fn remove_user(&self, name: &str) -> Result<(), AdminError>;

    /// Write the running backends, clients, users and settings back to the config file.
    fn save_config(&self) -> Result<(), AdminError>;
    fn version(&self) -> String;

    fn stats(&self) -> Vec<BackendStats>;
    fn sessions(&self) -> Vec<SessionInfo>;
    fn digests(&self) -> Vec<DigestInfo>;
    /// Empty when this process runs no VRRP instance.
    fn vrrp(&self) -> Vec<VrrpInfo>;
    /// Empty when this process runs no failover actions.
    fn ha_status(&self) -> Vec<HaStatusInfo> {
        Vec::new()
    }
    /// Start a planned switchover away from this node's primary; progress and outcome show
    /// in [`ControlPlane::ha_status`].
    fn switchover(&self) -> Result<(), AdminError> {
        Err(AdminError::failed(
            "SWITCHOVER: no failover actions run in this process ([ha.failover])",
        ))
    }

    /// `KILL [CONNECTION | QUERY] id` of a client session (ids as in `sessions`); an unknown
    /// id → [`AdminError::Failed`].
    fn kill_session(&self, id: u64, query_only: bool) -> Result<(), AdminError>;

    /// Runtime settings as `(name, value)`, for `SHOW VARIABLES` and `SELECT @@name`.
    fn variables(&self) -> Vec<(String, String)>;
    /// Change runtime settings `(name, value)`, all or none (as a server's `SET`): every one is
    /// checked before any takes effect. Unknown names → [`AdminError::UnknownVariable`].
    fn set_variables(&self, settings: &[(String, String)]) -> Result<(), AdminError>;
    /// Whether `SET` may change runtime setting `name` (the others are only shown).
    fn is_writable(&self, name: &str) -> bool;
}
