//! What a command answers, before the proxy puts it on the wire.
//!
//! Every value is text (or NULL): the admin port sends text-protocol result sets like Atlas,
//! so the proxy can encode a [`ResultSet`] without knowing what it describes. Only the
//! columns' declared types tell numbers from text (see [`ColumnType`]).

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

/// What a column is declared as. Its values travel as text either way; a number declared
/// as one is handed to scripts as a number by drivers (Python's get `2`, not `'2'`) and
/// right-aligned by the `mysql` client, as Atlas declares its `backend_ndx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnType {
    #[default]
    Text,
    /// An integer (the console's own are all unsigned).
    Integer,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResultSet {
    pub columns: Vec<String>,
    /// One per column.
    pub types: Vec<ColumnType>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    /// A result set of text columns.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Self {
        let columns: Vec<String> = columns.into_iter().map(Into::into).collect();
        ResultSet {
            types: vec![ColumnType::Text; columns.len()],
            columns,
            rows: Vec::new(),
        }
    }

    /// Declares the columns' types, one per column.
    pub fn with_types(mut self, types: &[ColumnType]) -> Self {
        assert_eq!(types.len(), self.columns.len(), "one type per column");
        self.types = types.to_vec();
        self
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
