//! `SAVE CONFIG`: write the parts of the running configuration the admin console can change
//! (backends, users, allowed client addresses) back into the file the proxy was started with, in
//! that file's own format, touching nothing else.
//!
//! * TOML: the document is edited with `toml_edit`, so comments, key order and formatting
//!   survive. The `[[backend]]` and `[[user]]` arrays are rebuilt from the snapshot, reusing the
//!   table (extra keys, comments) of every backend whose address and every user whose name is
//!   still there; `[proxy] client-ips` is replaced.
//! * Atlas `.cnf`: only the lines `proxy-backend-addresses`, `proxy-read-only-backend-addresses`,
//!   `pwds` and `client-ips` of `[mysql-proxy]` are rewritten in place (a missing one is appended
//!   to the section); every other byte is kept.
//!
//! A backend taken out of service (`SET OFFLINE`) is saved as `offline = true` on its TOML
//! table, and the key is removed again once it is back; Atlas's format has no place for it.
//!
//! A value that already means what the snapshot says is left exactly as written, so saving an
//! unchanged configuration leaves the file byte-identical. Passwords the admin console set are
//! written encrypted (Atlas's `pwds` encoding, TOML's `encrypted-password`), never in plain text.
//!
//! Before anything is written the new text is parsed back; if it would not load as the running
//! configuration (every other setting unchanged, except what the file derives from the saved
//! parts) nothing is written. The file is then replaced
//! atomically: temporary file in the same directory, fsync, original permissions, rename, fsync
//! of the directory.
//!
//! What Atlas's format cannot express: per-backend `max-connections` (one global value; the
//! file's is kept) and the interleaving of read-write and read-only backends (the file lists all
//! read-write ones first, so that is the order after a reload).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, Value};

use super::{
    atlas, defaults, parse_backend_address, parse_str, pwcrypt, toml_format, BackendConfig, Config,
    ConfigError, ConfigFormat, Role, UserConfig,
};

/// The parts of the running configuration that the admin console can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub backends: Vec<BackendConfig>,
    pub users: Vec<UserConfig>,
    pub client_ips: Vec<String>,
    /// `SET drain_timeout` (TOML `drain-timeout`; an Atlas file has none).
    pub drain_timeout: std::time::Duration,
}

impl Snapshot {
    /// The admin-changeable parts of `config`.
    pub fn of(config: &Config) -> Self {
        Snapshot {
            backends: config.backends.clone(),
            users: config.users.clone(),
            client_ips: config.client_ips.clone(),
            drain_timeout: config.drain_timeout,
        }
    }
}

/// Rewrite the configuration file at `path` (in `format`, normally [`Config::format`]) so that
/// loading it yields `snap`'s backends, users and client addresses, and everything else as
/// before. On error the file is untouched and the error names it.
///
/// Refuses (with the load error) when the file currently on disk does not load, and when the
/// rewritten text would not load back as intended (no backends, a user name Atlas's `pwds`
/// cannot hold, ...).
pub fn save(path: &Path, format: ConfigFormat, snap: &Snapshot) -> Result<(), ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let current = parse_str(path, &text, format.clone())?;
    let new_text = match format {
        ConfigFormat::Toml => toml_text(path, &text, snap)?,
        ConfigFormat::Atlas => {
            for b in snap.backends.iter().filter(|b| b.offline) {
                tracing::warn!(backend = %b.address, "SAVE CONFIG: an Atlas .cnf file cannot hold an OFFLINE state; {} will be back in service after a restart", b.address);
            }
            if snap.drain_timeout != current.drain_timeout {
                tracing::warn!("SAVE CONFIG: an Atlas .cnf file cannot hold drain_timeout; it will be {} s again after a restart", current.drain_timeout.as_secs());
            }
            atlas_text(path, &text, &current, snap)?
        }
    };
    verify(path, &format, &current, &text, &new_text, snap)?;
    if new_text == text {
        return Ok(());
    }
    write_atomic(path, new_text.as_bytes())
}

fn not_saved(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(path, None, None, format!("not saved: {}", message.into()))
}

/// Parse the new text and check it loads as `current` with the snapshot's parts swapped in.
fn verify(
    path: &Path,
    format: &ConfigFormat,
    current: &Config,
    old_text: &str,
    new_text: &str,
    snap: &Snapshot,
) -> Result<(), ConfigError> {
    let reloaded = parse_str(path, new_text, format.clone())
        .map_err(|e| not_saved(path, format!("the rewritten file would not load: {e}")))?;
    let mut expected = current.clone();
    expected.backends = snap.backends.clone();
    expected.users = snap.users.clone();
    expected.client_ips = snap.client_ips.clone();
    // What the rewritten file warns of is its own (a default backend filled in no longer is).
    expected.warnings.clone_from(&reloaded.warnings);
    if *format == ConfigFormat::Toml {
        expected.drain_timeout = snap.drain_timeout;
    }
    // What the file derives from the saved parts follows them: a user's own read-your-writes
    // goes with its [[user]] table, and [ha.ipvs] virtual servers without real_server tables
    // balance over the read backends.
    expected
        .read_your_writes
        .per_user
        .retain(|name, _| snap.users.iter().any(|u| u.name == *name));
    if *format == ConfigFormat::Toml {
        expected.ipvs = toml_format::ipvs_with_backends(path, old_text, &snap.backends)?;
    }
    if *format == ConfigFormat::Atlas {
        // One global max-connections, no offline states, and all read-write servers listed
        // first.
        let max = atlas_max_connections(current);
        for b in &mut expected.backends {
            b.max_connections = max;
            b.offline = false;
        }
        expected.backends.sort_by_key(|b| b.role != Role::ReadWrite);
    }
    let differs = if reloaded.backends != expected.backends {
        "backends"
    } else if reloaded.users != expected.users {
        "users"
    } else if reloaded.client_ips != expected.client_ips {
        "client addresses"
    } else if reloaded != expected {
        "other settings"
    } else {
        return Ok(());
    };
    Err(not_saved(
        path,
        format!("the {format:?} format cannot represent the running configuration exactly ({differs} would differ after a reload)"),
    ))
}

// ---------------------------------------------------------------------------------------------
// TOML
// ---------------------------------------------------------------------------------------------

fn role_str(role: Role) -> &'static str {
    match role {
        Role::ReadWrite => "rw",
        Role::ReadOnly => "ro",
    }
}

/// `max-connections` as written: 0 means unlimited.
fn max_connections_value(n: u32) -> i64 {
    if n == u32::MAX {
        0
    } else {
        i64::from(n)
    }
}

/// Set `key` to `v`, keeping the whitespace and comment around an existing value.
fn set_keep_decor(table: &mut dyn toml_edit::TableLike, key: &str, v: impl Into<Value>) {
    let mut v = v.into();
    match table.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *v.decor_mut() = old.decor().clone();
            *old = v;
        }
        None => {
            table.insert(key, Item::Value(v));
        }
    }
}

/// The `[proxy]` table, made when the file has none.
fn proxy_table(doc: &mut DocumentMut) -> &mut dyn toml_edit::TableLike {
    if doc.get("proxy").and_then(Item::as_table_like).is_none() {
        doc.insert("proxy", Item::Table(Table::new()));
    }
    doc.get_mut("proxy")
        .and_then(Item::as_table_like_mut)
        .expect("[proxy] was just ensured")
}

fn toml_text(path: &Path, text: &str, snap: &Snapshot) -> Result<String, ConfigError> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| not_saved(path, e.message().to_string()))?;
    let next_position = max_position(doc.as_table()).map_or(0, |p| p + 1);

    // [[backend]]
    let old = take_tables(path, &mut doc, "backend")?;
    let old_addresses: Vec<Option<String>> = old
        .iter()
        .map(|t| {
            let a = t.get("address").and_then(Item::as_str)?;
            parse_backend_address(a, None).ok()
        })
        .collect();
    let mut used = vec![false; old.len()];
    let mut new = Vec::with_capacity(snap.backends.len());
    for b in &snap.backends {
        let found = (0..old.len())
            .find(|&i| !used[i] && old_addresses[i].as_deref() == Some(b.address.as_str()));
        let Some(i) = found else {
            let mut t = Table::new();
            t.insert("address", toml_edit::value(b.address.as_str()));
            t.insert("role", toml_edit::value(role_str(b.role)));
            t.insert("weight", toml_edit::value(i64::from(b.weight)));
            if b.max_connections != defaults::MAX_CONNECTIONS {
                t.insert(
                    "max-connections",
                    toml_edit::value(max_connections_value(b.max_connections)),
                );
            }
            if b.offline {
                t.insert("offline", toml_edit::value(true));
            }
            new.push((None, t));
            continue;
        };
        used[i] = true;
        let mut t = old[i].clone();
        if t.get("role").and_then(Item::as_str) != Some(role_str(b.role)) {
            set_keep_decor(&mut t, "role", role_str(b.role));
        }
        let weight = t.get("weight").and_then(Item::as_integer);
        if weight.unwrap_or(i64::from(defaults::WEIGHT)) != i64::from(b.weight) {
            set_keep_decor(&mut t, "weight", i64::from(b.weight));
        }
        let max = match t.get("max-connections").and_then(Item::as_integer) {
            Some(0) => u32::MAX,
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => defaults::MAX_CONNECTIONS,
        };
        if max != b.max_connections {
            set_keep_decor(
                &mut t,
                "max-connections",
                max_connections_value(b.max_connections),
            );
        }
        let offline = t.get("offline").and_then(Item::as_bool).unwrap_or(false);
        if offline != b.offline {
            if b.offline {
                set_keep_decor(&mut t, "offline", true);
            } else {
                // Back in service: the key goes, as in a table written without it.
                t.remove("offline");
            }
        }
        new.push((Some(i), t));
    }
    put_tables(&mut doc, "backend", old, new, next_position);

    // [[user]]
    let old = take_tables(path, &mut doc, "user")?;
    let mut used = vec![false; old.len()];
    let mut new = Vec::with_capacity(snap.users.len());
    for u in &snap.users {
        let found = (0..old.len()).find(|&i| {
            !used[i] && old[i].get("name").and_then(Item::as_str).map(str::trim) == Some(&u.name)
        });
        let encrypted = pwcrypt::atlas_encrypt(&u.password);
        let Some(i) = found else {
            let mut t = Table::new();
            t.insert("name", toml_edit::value(u.name.as_str()));
            t.insert("encrypted-password", toml_edit::value(encrypted));
            new.push((None, t));
            continue;
        };
        used[i] = true;
        let mut t = old[i].clone();
        let current = match (
            t.get("password").and_then(Item::as_str),
            t.get("encrypted-password").and_then(Item::as_str),
        ) {
            (Some(p), None) => Some(p.to_string()),
            (None, Some(e)) => pwcrypt::atlas_decrypt(e).ok(),
            _ => None,
        };
        if current.as_deref() != Some(u.password.as_str()) {
            // Changed by the admin: store it encrypted. A comment after the old value (the
            // sample has `# report_pass`) described the old password, so it goes too.
            t.remove("password");
            set_keep_decor(&mut t, "encrypted-password", encrypted);
            if let Some(v) = t.get_mut("encrypted-password").and_then(Item::as_value_mut) {
                v.decor_mut().set_suffix("");
            }
        }
        new.push((Some(i), t));
    }
    put_tables(&mut doc, "user", old, new, next_position);

    // [proxy] client-ips
    let current: Option<Vec<String>> = doc
        .get("proxy")
        .and_then(|p| p.get("client-ips"))
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or_default().trim().to_string())
                .collect()
        });
    let drain = snap.drain_timeout.as_secs();
    let file_drain = doc
        .get("proxy")
        .and_then(|p| p.get("drain-timeout"))
        .and_then(Item::as_integer);
    if file_drain.unwrap_or(defaults::DRAIN_TIMEOUT_SECS as i64) != drain as i64 {
        set_keep_decor(proxy_table(&mut doc), "drain-timeout", drain as i64);
    }
    if current.as_deref().unwrap_or_default() != snap.client_ips.as_slice() {
        let mut ips: Array = snap.client_ips.iter().map(String::as_str).collect();
        ips.fmt();
        set_keep_decor(proxy_table(&mut doc), "client-ips", ips);
    }
    Ok(doc.to_string())
}

/// The largest table position in the document (the order tables are printed in).
fn max_position(table: &Table) -> Option<isize> {
    let mut max = table.position();
    for (_, item) in table.iter() {
        let sub = match item {
            Item::Table(t) => max_position(t),
            Item::ArrayOfTables(a) => a.iter().filter_map(max_position).max(),
            _ => None,
        };
        max = max.max(sub);
    }
    max
}

/// The table printed first after position `after` (top-level tables and arrays' tables).
fn next_table_after(doc: &mut Table, after: isize) -> Option<&mut Table> {
    let mut best: Option<&mut Table> = None;
    for (_, item) in doc.iter_mut() {
        let candidates: Vec<&mut Table> = match item {
            Item::Table(t) => vec![t],
            Item::ArrayOfTables(a) => a.iter_mut().collect(),
            _ => Vec::new(),
        };
        for t in candidates {
            let Some(p) = t.position().filter(|p| *p > after) else {
                continue;
            };
            if best
                .as_ref()
                .and_then(|b| b.position())
                .is_none_or(|b| p < b)
            {
                best = Some(t);
            }
        }
    }
    best
}

/// The tables of the array `key` (also when written inline as `key = [{...}]`), leaving the
/// key in place (so the document's key order is kept) with an empty value.
fn take_tables(path: &Path, doc: &mut DocumentMut, key: &str) -> Result<Vec<Table>, ConfigError> {
    let Some(item) = doc.get_mut(key) else {
        return Ok(Vec::new());
    };
    match std::mem::take(item).into_array_of_tables() {
        Ok(a) => Ok(a.into_iter().collect()),
        Err(_) => Err(not_saved(
            path,
            format!("'{key}' is not an array of tables; write it as [[{key}]] tables"),
        )),
    }
}

/// Store `new` as the array `key`. Each entry is a table and, for a surviving one, its index in
/// `old`. The comment block in front of the first old table usually introduces the whole
/// section, so it stays in front of the first table whatever that is now.
fn put_tables(
    doc: &mut DocumentMut,
    key: &str,
    old: Vec<Table>,
    new: Vec<(Option<usize>, Table)>,
    next_position: isize,
) {
    let lead = old
        .first()
        .and_then(|t| t.decor().prefix())
        .and_then(|p| p.as_str())
        .map(str::to_string);
    let position = old
        .first()
        .and_then(Table::position)
        .unwrap_or(next_position);
    if new.is_empty() {
        doc.remove(key);
        // Keep the section's comment: in front of whatever table came next, or at the end
        // of the file when the array was last.
        let Some(lead) = lead else { return };
        let Some(last_old) = old.iter().filter_map(Table::position).max() else {
            return;
        };
        match next_table_after(doc.as_table_mut(), last_old) {
            Some(next) => {
                let own = next
                    .decor()
                    .prefix()
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string();
                next.decor_mut().set_prefix(format!("{lead}{own}"));
            }
            None => {
                let trailing = doc.trailing().as_str().unwrap_or_default().to_string();
                doc.set_trailing(format!("{lead}{trailing}"));
            }
        }
        return;
    }
    let mut array = ArrayOfTables::new();
    for (n, (from, mut t)) in new.into_iter().enumerate() {
        let own = t
            .decor()
            .prefix()
            .and_then(|p| p.as_str())
            .map(str::to_string);
        if n == 0 {
            if from != Some(0) {
                if let Some(lead) = &lead {
                    t.decor_mut()
                        .set_prefix(format!("{lead}{}", own.unwrap_or_default()));
                }
            }
        } else if from == Some(0) {
            // The section comment stayed in front; this table gets a plain blank line.
            t.decor_mut().set_prefix("\n");
        }
        // One position for all: the printer sorts tables stably by position, so the array
        // keeps its place in the file and its own order.
        t.set_position(position);
        array.push(t);
    }
    match doc.get_mut(key) {
        Some(item) => *item = Item::ArrayOfTables(array),
        None => {
            doc.insert(key, Item::ArrayOfTables(array));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Atlas .cnf
// ---------------------------------------------------------------------------------------------

const RW_KEY: &str = "proxy-backend-addresses";
const RO_KEY: &str = "proxy-read-only-backend-addresses";
const PWDS_KEY: &str = "pwds";
const IPS_KEY: &str = "client-ips";

fn atlas_max_connections(current: &Config) -> u32 {
    current
        .backends
        .first()
        .map_or(defaults::MAX_CONNECTIONS, |b| b.max_connections)
}

fn atlas_backends(snap: &Snapshot, role: Role) -> Vec<(String, u32)> {
    snap.backends
        .iter()
        .filter(|b| b.role == role)
        .map(|b| (b.address.clone(), b.weight))
        .collect()
}

fn parse_backends(value: &str) -> Option<Vec<(String, u32)>> {
    atlas::list(value)
        .map(atlas::backend)
        .collect::<Result<_, _>>()
        .ok()
}

fn parse_pwds(value: &str) -> Vec<(String, String)> {
    atlas::list(value)
        .filter_map(|item| {
            let (u, p) = item.split_once(':')?;
            Some((u.trim().to_string(), p.trim().to_string()))
        })
        .collect()
}

/// What a line of `key` should say, or `None` if its current `value` already means that.
struct Wanted<'a> {
    snap: &'a Snapshot,
    rw: Vec<(String, u32)>,
    ro: Vec<(String, u32)>,
    /// `user:encrypted`, reusing the file's ciphertext of unchanged passwords.
    pwds: String,
}

impl Wanted<'_> {
    fn rendered(&self, key: &str) -> String {
        let backends = |list: &[(String, u32)]| {
            list.iter()
                .map(|(a, w)| {
                    if *w == defaults::WEIGHT {
                        a.clone()
                    } else {
                        format!("{a}@{w}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        match key {
            RW_KEY => backends(&self.rw),
            RO_KEY => backends(&self.ro),
            PWDS_KEY => self.pwds.clone(),
            _ => self.snap.client_ips.join(", "),
        }
    }

    /// Whether `value` (as found in the file) already says what is wanted.
    fn satisfied_by(&self, key: &str, value: &str) -> bool {
        match key {
            RW_KEY => parse_backends(value).as_ref() == Some(&self.rw),
            RO_KEY => parse_backends(value).as_ref() == Some(&self.ro),
            PWDS_KEY => {
                let have = parse_pwds(value);
                have.len() == self.snap.users.len()
                    && have.iter().zip(&self.snap.users).all(|((n, e), u)| {
                        *n == u.name && pwcrypt::atlas_decrypt(e).as_deref() == Ok(&u.password)
                    })
            }
            _ => atlas::list(value).eq(self.snap.client_ips.iter().map(String::as_str)),
        }
    }

    /// Whether an absent `key` already means what is wanted.
    fn satisfied_when_absent(&self, key: &str) -> bool {
        match key {
            // Atlas's fallback when the key is absent.
            RW_KEY => self.rw == [(format!("127.0.0.1:{}", defaults::BACKEND_PORT), 1)],
            RO_KEY => self.ro.is_empty(),
            PWDS_KEY => self.snap.users.is_empty(),
            _ => self.snap.client_ips.is_empty(),
        }
    }
}

fn atlas_text(
    path: &Path,
    text: &str,
    current: &Config,
    snap: &Snapshot,
) -> Result<String, ConfigError> {
    for (what, s) in snap
        .users
        .iter()
        .map(|u| ("user name", u.name.as_str()))
        .chain(
            snap.client_ips
                .iter()
                .map(|s| ("client address", s.as_str())),
        )
    {
        if s.contains([',', '\n', '\r']) || (what == "user name" && s.contains(':')) {
            return Err(not_saved(
                path,
                format!(
                    "{what} '{}' cannot be written in an Atlas file",
                    s.escape_debug()
                ),
            ));
        }
    }
    let max = atlas_max_connections(current);
    if snap.backends.iter().any(|b| b.max_connections != max) {
        tracing::warn!(
            "{}: Atlas's format has one max-connections for all backends; keeping the file's",
            path.display()
        );
    }

    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let eol = if lines.first().is_some_and(|l| l.ends_with("\r\n")) {
        "\r\n"
    } else {
        "\n"
    };

    // The ciphertext the file already has for each user, reused when it still decrypts to the
    // user's password (so an unchanged user's entry stays byte-identical).
    let mut known: Vec<(String, String)> = Vec::new();
    let mut in_section = false;
    for raw in &lines {
        let l = raw.trim_start_matches('\u{feff}').trim();
        if l.starts_with('[') {
            in_section = l.trim_start_matches('[').trim_end_matches(']').trim() == atlas::SECTION;
        } else if in_section {
            if let Some((k, v)) = l.split_once('=') {
                if k.trim() == PWDS_KEY {
                    known = parse_pwds(v);
                }
            }
        }
    }
    let pwds = snap
        .users
        .iter()
        .map(|u| {
            let enc = known
                .iter()
                .find(|(n, e)| {
                    *n == u.name && pwcrypt::atlas_decrypt(e).as_deref() == Ok(&u.password)
                })
                .map(|(_, e)| e.clone())
                .unwrap_or_else(|| pwcrypt::atlas_encrypt(&u.password));
            format!("{}:{enc}", u.name)
        })
        .collect::<Vec<_>>()
        .join(", ");
    let wanted = Wanted {
        snap,
        rw: atlas_backends(snap, Role::ReadWrite),
        ro: atlas_backends(snap, Role::ReadOnly),
        pwds,
    };

    let keys = [RW_KEY, RO_KEY, PWDS_KEY, IPS_KEY];
    let mut found = [false; 4];
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 4);
    // Where to append missing keys: after the last key line of the last [mysql-proxy] group
    // when another group follows it (comments before that group belong to it), else at the end.
    let mut in_section = false;
    let mut insert_at: Option<usize> = None;
    let mut section_closed = false;
    for raw in &lines {
        let l = raw.trim_start_matches('\u{feff}').trim();
        if l.starts_with('[') {
            let name = l.trim_start_matches('[').trim_end_matches(']').trim();
            if in_section {
                section_closed = true;
            }
            in_section = name == atlas::SECTION;
            if in_section {
                section_closed = false;
                insert_at = Some(out.len() + 1);
            }
            out.push(raw.to_string());
            continue;
        }
        if !in_section || l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            out.push(raw.to_string());
            continue;
        }
        insert_at = Some(out.len() + 1);
        let key_index = l
            .split_once('=')
            .and_then(|(k, _)| keys.iter().position(|&want| want == k.trim()));
        let Some(ki) = key_index else {
            out.push(raw.to_string());
            continue;
        };
        found[ki] = true;
        let key = keys[ki];
        let eq = raw.find('=').expect("a key line has '='");
        let body = raw.trim_end_matches(['\n', '\r']);
        let line_eol = &raw[body.len()..];
        let value = body[eq + 1..].trim();
        if wanted.satisfied_by(key, value) {
            out.push(raw.to_string());
            continue;
        }
        let after_eq = &body[eq + 1..];
        let space = &after_eq[..after_eq.len() - after_eq.trim_start().len()];
        let space = if value.is_empty() || space.is_empty() {
            " "
        } else {
            space
        };
        let new_value = wanted.rendered(key);
        let line = format!("{}{space}{new_value}", &body[..eq + 1]);
        out.push(format!("{}{line_eol}", line.trim_end()));
    }

    let mut missing = String::new();
    for (ki, key) in keys.iter().enumerate() {
        if !found[ki] && !wanted.satisfied_when_absent(key) {
            let line = format!("{key} = {}", wanted.rendered(key));
            missing.push_str(line.trim_end());
            missing.push_str(eol);
        }
    }
    if !missing.is_empty() {
        let at = if section_closed {
            insert_at.unwrap_or(out.len())
        } else {
            out.len()
        };
        if let Some(prev) = at.checked_sub(1).and_then(|i| out.get_mut(i)) {
            if !prev.ends_with('\n') {
                prev.push_str(eol);
            }
        }
        out.insert(at, missing);
    }
    Ok(out.concat())
}

// ---------------------------------------------------------------------------------------------
// Atomic replacement
// ---------------------------------------------------------------------------------------------

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replace `path`'s content with `data` so that a crash leaves either the old or the new file.
/// A symlink is followed: the file it points to is replaced, the link stays.
fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ConfigError> {
    let fail = |what: String| {
        let path = path.to_path_buf();
        move |source| ConfigError::Write { path, what, source }
    };
    let target = fs::canonicalize(path).map_err(fail("resolving the path".into()))?;
    let dir = target.parent().map(Path::to_path_buf).unwrap_or_default();
    let meta = fs::metadata(&target).map_err(fail("reading its permissions".into()))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp: PathBuf = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));

    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(fail(format!(
            "creating a temporary file in {}",
            dir.display()
        )))?;
    let written = (|| {
        file.write_all(data)
            .map_err(fail(format!("writing {}", tmp.display())))?;
        file.set_permissions(meta.permissions())
            .map_err(fail(format!(
                "setting the permissions of {}",
                tmp.display()
            )))?;
        {
            use std::os::unix::fs::MetadataExt as _;
            // Best effort: only root may give a file away, and then it should keep its owner.
            let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
        }
        file.sync_all()
            .map_err(fail(format!("syncing {}", tmp.display())))?;
        drop(file);
        fs::rename(&tmp, &target).map_err(fail(format!("renaming {} over it", tmp.display())))
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // Make the rename itself durable.
    fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(fail(format!(
            "syncing directory {} (the file was replaced)",
            dir.display()
        )))
}

#[cfg(test)]
mod tests;
