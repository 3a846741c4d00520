//! What a command answers, before the proxy puts it on the wire.
//!
//! Every value is text (or NULL): the admin port sends text-protocol result sets like Atlas,
//! so the proxy can encode a [`ResultSet`] without knowing what it describes.

/// The answer to one admin statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A result set (possibly with no rows: Atlas answers ADD/REMOVE/SAVE with an empty
    /// result set whose only column is `status`).
    Rows(ResultSet),
    /// An OK packet.
    Ok { affected: u64, info: String },
}

impl Reply {
    pub fn ok() -> Self {
        Reply::Ok {
            affected: 0,
            info: String::new(),
        }
    }

    /// The result set, if this is one.
    pub fn rows(&self) -> Option<&ResultSet> {
        match self {
            Reply::Rows(rs) => Some(rs),
            Reply::Ok { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        ResultSet {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Append a row; it must have one value per column.
    pub fn push(&mut self, row: Vec<Option<String>>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width != column count");
        self.rows.push(row);
    }

    /// Position of a column, compared case-insensitively as MySQL does.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
    }
}
