//! The client-visible session state the proxy must carry from one pooled backend connection
//! to the next: default schema and the session variables the client has `SET`.

use std::sync::Arc;
use std::time::Duration;

/// "Never" as a session's idle timeout: a year, the longest `wait_timeout` a server takes.
pub const NEVER: Duration = Duration::from_secs(31_536_000);

/// Variables whose value is a list of `flag=on|off`, of which an assignment changes only the
/// flags it names (MariaDB's flag sets).
const FLAG_SETS: [&str; 2] = ["optimizer_switch", "optimizer_trace"];

/// Session state as a schema plus an ordered list of `SET` assignments.
///
/// Order matters (`SET sql_mode = CONCAT(@@sql_mode, ...)` depends on what came before), so a
/// re-assigned variable moves to the end. A connection whose list is a prefix of the
/// session's only needs the tail replayed; anything else is reset and replayed from scratch.
#[derive(Debug, Clone, Default, Eq)]
pub struct SessionState {
    /// Shared (see `names`): compared with a pooled connection's for every statement.
    pub schema: Option<Arc<str>>,
    /// (normalised variable name, assignment text to put after `SET `).
    pub vars: Vec<(String, String)>,
}

impl PartialEq for SessionState {
    fn eq(&self, other: &SessionState) -> bool {
        super::names::same_opt(self.schema.as_ref(), other.schema.as_ref())
            && self.vars == other.vars
    }
}

impl SessionState {
    /// Records an assignment. One computed from current values (`CONCAT(@@sql_mode, ...)`)
    /// keeps the variable's earlier assignments before it: replayed alone on a fresh
    /// connection it would start from the server's defaults instead of what they set. So
    /// does one to a flag set (`optimizer_switch='mrr=on'`), which changes only the flags it
    /// names, unless it starts from the defaults.
    pub fn set_var(&mut self, key: String, assignment: String) {
        let builds_on_earlier = assignment.split_once('=').is_some_and(|(_, value)| {
            value.contains("@@")
                || FLAG_SETS.contains(&key.as_str())
                    && !value.to_ascii_lowercase().contains("default")
        });
        if !builds_on_earlier {
            self.vars.retain(|(k, _)| *k != key);
        }
        self.vars.push((key, assignment));
    }

    /// The assignments a connection in state `from` lacks, or `None` when it has diverged and
    /// must be reset first.
    pub fn vars_delta<'a>(&'a self, from: &SessionState) -> Option<&'a [(String, String)]> {
        if from.vars.len() <= self.vars.len() && self.vars[..from.vars.len()] == from.vars[..] {
            Some(&self.vars[from.vars.len()..])
        } else {
            None
        }
    }

    /// The `wait_timeout` the session set, after which a connection in this state is closed
    /// by its server when idle: `None` if it set none, `Some(None)` if not a plain number
    /// (`DEFAULT`: the server's global value; an expression).
    pub fn wait_timeout(&self) -> Option<Option<Duration>> {
        self.timeout("wait_timeout")
    }

    /// The `net_write_timeout` the session set, as [`Self::wait_timeout`].
    pub fn net_write_timeout(&self) -> Option<Option<Duration>> {
        self.timeout("net_write_timeout")
    }

    fn timeout(&self, name: &str) -> Option<Option<Duration>> {
        let (_, text) = self.vars.iter().rfind(|(k, _)| k == name)?;
        Some(timeout_of(text))
    }

    /// `COM_RESET_CONNECTION` clears session variables but keeps the current schema.
    pub fn default_after_reset(prev: &SessionState) -> SessionState {
        SessionState {
            schema: prev.schema.clone(),
            vars: Vec::new(),
        }
    }
}

/// The timeout (`wait_timeout`, `net_write_timeout`) an assignment sets, as a server takes
/// it: a plain number of seconds (a comment may follow), clamped to 1 s .. 1 year. Anything
/// else (`DEFAULT`, an expression) leaves the proxy's own.
pub fn timeout_of(assignment: &str) -> Option<Duration> {
    seconds_of(assignment.split_once('=')?.1.trim_start())
}

/// A timeout's value in seconds as a server reports it (session tracking) or a plain `SET`
/// gives it; `None` for anything else (`DEFAULT`, an expression).
pub fn seconds_of(value: &str) -> Option<Duration> {
    let end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '+'))
        .unwrap_or(value.len());
    let rest = value[end..].trim_start();
    let plain = rest.is_empty()
        || rest.starts_with("/*")
        || rest.starts_with("--")
        || rest.starts_with('#');
    let secs: i64 = value[..end].parse().ok().filter(|_| plain)?;
    Some(Duration::from_secs(
        secs.clamp(1, NEVER.as_secs() as i64) as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_is_the_missing_tail() {
        let mut s = SessionState::default();
        s.set_var("time_zone".into(), "time_zone='+00:00'".into());
        let conn = s.clone();
        s.set_var("sql_mode".into(), "sql_mode=''".into());
        assert_eq!(s.vars_delta(&conn).unwrap().len(), 1);
        assert_eq!(s.vars_delta(&s).unwrap().len(), 0);
        s.set_var("time_zone".into(), "time_zone='+01:00'".into());
        assert!(s.vars_delta(&conn).is_none());
        assert_eq!(s.vars[1].0, "time_zone");
    }

    #[test]
    fn computed_values_keep_what_they_build_on() {
        let mut s = SessionState::default();
        s.set_var("sql_mode".into(), "sql_mode='ANSI_QUOTES'".into());
        s.set_var(
            "sql_mode".into(),
            "sql_mode=CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')".into(),
        );
        assert_eq!(s.vars.len(), 2);
        s.set_var("sql_mode".into(), "sql_mode=''".into());
        assert_eq!(s.vars, [("sql_mode".into(), "sql_mode=''".into())]);
    }

    #[test]
    fn flag_sets_add_up_until_set_from_the_defaults() {
        let mut s = SessionState::default();
        let set = |s: &mut SessionState, value: &str| {
            s.set_var(
                "optimizer_switch".into(),
                format!("optimizer_switch={value}"),
            )
        };
        set(&mut s, "'index_merge=off'");
        set(&mut s, "'mrr=on'");
        assert_eq!(s.vars.len(), 2);
        set(&mut s, "'DEFAULT,mrr=off'");
        assert_eq!(s.vars.len(), 1);
        set(&mut s, "DEFAULT");
        assert_eq!(
            s.vars,
            [("optimizer_switch".into(), "optimizer_switch=DEFAULT".into())]
        );
    }

    #[test]
    fn wait_timeout_as_a_server_takes_it() {
        let secs = |s: &str| timeout_of(s).map(|d| d.as_secs());
        assert_eq!(secs("wait_timeout=3"), Some(3));
        assert_eq!(secs("@@session.wait_timeout = 3 /* c */"), Some(3));
        assert_eq!(secs("wait_timeout=3 -- c"), Some(3));
        assert_eq!(secs("wait_timeout=0"), Some(1));
        assert_eq!(secs("wait_timeout=-5"), Some(1));
        assert_eq!(secs("wait_timeout=99999999999"), Some(31_536_000));
        assert_eq!(timeout_of("wait_timeout=DEFAULT"), None);
        assert_eq!(timeout_of("wait_timeout=1+2"), None);
        assert_eq!(timeout_of("wait_timeout=@@global.wait_timeout"), None);
        let mut s = SessionState::default();
        assert_eq!(s.wait_timeout(), None);
        s.set_var("wait_timeout".into(), "wait_timeout=5".into());
        s.set_var("time_zone".into(), "time_zone='+00:00'".into());
        assert_eq!(s.wait_timeout(), Some(Some(Duration::from_secs(5))));
        s.set_var("wait_timeout".into(), "wait_timeout=DEFAULT".into());
        assert_eq!(s.wait_timeout(), Some(None));
    }
}
