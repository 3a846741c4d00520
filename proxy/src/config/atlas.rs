//! Atlas's `.cnf` format (to be written).
use std::path::Path;
use super::{Config, ConfigError};
pub(super) fn parse(path: &Path, _text: &str) -> Result<Config, ConfigError> {
    Err(ConfigError::invalid(path, None, None, "todo"))
}
