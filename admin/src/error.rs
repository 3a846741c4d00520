//! Errors of the admin console.
//!
//! Every error maps to a MySQL error code and SQLSTATE so the proxy can turn it into an ERR
//! packet without knowing what went wrong. Atlas itself answers every admin failure with
//! 1105 / `07000` (mysql-proxy's defaults for a Lua `MYSQLD_PACKET_ERR`); we keep 1105 for
//! failures but use the SQLSTATEs a MySQL server would, so that drivers which classify errors
//! by SQLSTATE (syntax vs. runtime) do the right thing.

use thiserror::Error;

/// Atlas's own wording for an unrecognised statement; scripts and people grep for it.
pub const UNKNOWN_COMMAND_HINT: &str = "use 'SELECT * FROM help' to see the supported commands";

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdminError {
    /// The statement is none of the admin commands.
    #[error("unknown admin command '{0}': use 'SELECT * FROM help' to see the supported commands")]
    UnknownCommand(String),
    /// A known command with a malformed argument.
    #[error("{0}")]
    Syntax(String),
    /// Nothing but whitespace, comments or `;`.
    #[error("Query was empty")]
    EmptyQuery,
    /// `backend_ndx` out of range.
    #[error(
        "backend {ndx} does not exist (use 'SELECT * FROM backends' to see the backend_ndx values)"
    )]
    NoSuchBackend { ndx: usize },
    /// `KILL n` of no session of this proxy.
    #[error("Unknown thread id: {0}")]
    UnknownThread(u64),
    #[error("Unknown system variable '{0}'")]
    UnknownVariable(String),
    #[error("Variable '{0}' is a read only variable")]
    ReadOnlyVariable(String),
    /// `SET SESSION` of a runtime setting, which is the proxy's, not the session's.
    #[error("Variable '{0}' is a GLOBAL variable and should be set with SET GLOBAL")]
    GlobalVariable(String),
    #[error("Variable '{name}' can't be set to the value of '{value}'")]
    WrongValue { name: String, value: String },
    /// The control plane refused or failed to carry out a well-formed command.
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    pub fn syntax(msg: impl Into<String>) -> Self {
        AdminError::Syntax(msg.into())
    }

    pub fn failed(msg: impl Into<String>) -> Self {
        AdminError::Failed(msg.into())
    }

    /// MySQL error number for the ERR packet.
    pub fn code(&self) -> u16 {
        match self {
            AdminError::UnknownCommand(_) | AdminError::Syntax(_) => 1064, // ER_PARSE_ERROR
            AdminError::EmptyQuery => 1065,                                // ER_EMPTY_QUERY
            AdminError::UnknownThread(_) => 1094,                          // ER_NO_SUCH_THREAD
            AdminError::UnknownVariable(_) => 1193, // ER_UNKNOWN_SYSTEM_VARIABLE
            AdminError::ReadOnlyVariable(_) => 1238, // ER_INCORRECT_GLOBAL_LOCAL_VAR
            AdminError::GlobalVariable(_) => 1229,  // ER_GLOBAL_VARIABLE
            AdminError::WrongValue { .. } => 1231,  // ER_WRONG_VALUE_FOR_VAR
            AdminError::NoSuchBackend { .. } | AdminError::Failed(_) => 1105, // ER_UNKNOWN_ERROR
        }
    }

    /// Five-character SQLSTATE for the ERR packet.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AdminError::UnknownCommand(_)
            | AdminError::Syntax(_)
            | AdminError::EmptyQuery
            | AdminError::WrongValue { .. } => "42000",
            _ => "HY000",
        }
    }

    /// The text for the ERR packet.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_states() {
        let e = AdminError::UnknownCommand("foo".into());
        assert_eq!((e.code(), e.sqlstate()), (1064, "42000"));
        assert!(e.message().contains(UNKNOWN_COMMAND_HINT));
        let e = AdminError::failed("boom");
        assert_eq!(
            (e.code(), e.sqlstate(), e.message().as_str()),
            (1105, "HY000", "boom")
        );
        let e = AdminError::NoSuchBackend { ndx: 9 };
        assert_eq!(e.code(), 1105);
        assert!(e.message().contains("backend 9 does not exist"));
        assert_eq!(AdminError::UnknownVariable("x".into()).code(), 1193);
        let e = AdminError::EmptyQuery;
        assert_eq!((e.code(), e.sqlstate()), (1065, "42000"));
    }
}
