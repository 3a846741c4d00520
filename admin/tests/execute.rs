//! `execute` against an in-memory control plane: exact columns and rows, and errors as the
//! proxy will put them in ERR packets.

use std::sync::Mutex;

use rwproxy_admin::{
    execute, execute_in, AdminError, BackendInfo, BackendRole, BackendState, BackendStats,
    ControlPlane, DigestInfo, ExecContext, Reply, ResultSet, SessionInfo, UserPassword, VrrpInfo,
};

#[derive(Default)]
struct State {
    /// (address, role, weight, state)
    backends: Vec<(String, BackendRole, u32, BackendState)>,
    clients: Vec<String>,
    users: Vec<(String, String)>,
    vars: Vec<(String, String)>,
    saves: usize,
    /// (session id, query only) of each KILL.
    kills: Vec<(u64, bool)>,
}

/// A control plane over plain collections, standing in for the proxy.
struct Memory(Mutex<State>);

impl Memory {
    fn new() -> Self {
        let s = State {
            backends: vec![
                (
                    "10.0.0.1:3306".into(),
                    BackendRole::ReadWrite,
                    1,
                    BackendState::Up,
                ),
                (
                    "10.0.0.2:3306".into(),
                    BackendRole::ReadOnly,
                    2,
                    BackendState::Up,
                ),
                (
                    "db3.example:3307".into(),
                    BackendRole::ReadOnly,
                    1,
                    BackendState::Down,
                ),
            ],
            clients: vec!["127.0.0.1".into()],
            users: vec![("app".into(), "KsWNCR6qyNk=".into())],
            vars: vec![
                ("max_replica_lag".into(), "60".into()),
                ("read_your_writes".into(), "OFF".into()),
            ],
            saves: 0,
            kills: Vec::new(),
        };
        Memory(Mutex::new(s))
    }

    fn sorted(s: &State) -> Vec<BackendInfo> {
        let mut v: Vec<_> = s
            .backends
            .iter()
            .filter(|b| b.1 == BackendRole::ReadWrite)
            .collect();
        v.extend(s.backends.iter().filter(|b| b.1 == BackendRole::ReadOnly));
        v.into_iter()
            .enumerate()
            .map(|(i, (address, role, weight, state))| BackendInfo {
                ndx: i + 1,
                address: address.clone(),
                state: *state,
                role: *role,
                weight: *weight,
            })
            .collect()
    }

    fn set_state(&self, ndx: usize, st: BackendState) -> Result<BackendInfo, AdminError> {
        let mut s = self.0.lock().unwrap();
        let addr = Self::sorted(&s)
            .get(ndx.wrapping_sub(1))
            .ok_or(AdminError::NoSuchBackend { ndx })?
            .address
            .clone();
        s.backends.iter_mut().find(|b| b.0 == addr).unwrap().3 = st;
        Ok(Self::sorted(&s).remove(ndx - 1))
    }
}

impl ControlPlane for Memory {
    fn backends(&self) -> Vec<BackendInfo> {
        Self::sorted(&self.0.lock().unwrap())
    }
    fn set_offline(&self, ndx: usize) -> Result<BackendInfo, AdminError> {
        self.set_state(ndx, BackendState::Offline)
    }
    fn set_online(&self, ndx: usize) -> Result<BackendInfo, AdminError> {
        self.set_state(ndx, BackendState::Unknown)
    }
    fn add_backend(&self, address: &str, role: BackendRole, weight: u32) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        if s.backends.iter().any(|b| b.0 == address) {
            return Err(AdminError::failed(format!(
                "backend {address} already exists"
            )));
        }
        s.backends
            .push((address.into(), role, weight, BackendState::Unknown));
        Ok(())
    }
    fn remove_backend(&self, ndx: usize) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        let addr = Self::sorted(&s)
            .get(ndx.wrapping_sub(1))
            .ok_or(AdminError::NoSuchBackend { ndx })?
            .address
            .clone();
        s.backends.retain(|b| b.0 != addr);
        Ok(())
    }
    fn remove_reader(&self, address: &str) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        let before = s.backends.len();
        s.backends
            .retain(|b| !(b.0 == address && b.1 == BackendRole::ReadOnly));
        match s.backends.len() < before {
            true => Ok(()),
            false => Err(AdminError::failed(format!(
                "no read-only backend at {address}"
            ))),
        }
    }
    fn clients(&self) -> Vec<String> {
        self.0.lock().unwrap().clients.clone()
    }
    fn add_client(&self, ip: &str) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        if s.clients.iter().any(|c| c == ip) {
            return Err(AdminError::failed(format!("client {ip} already exists")));
        }
        s.clients.push(ip.into());
        Ok(())
    }
    fn remove_client(&self, ip: &str) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        let before = s.clients.len();
        s.clients.retain(|c| c != ip);
        if s.clients.len() == before {
            return Err(AdminError::failed(format!("client {ip} does not exist")));
        }
        Ok(())
    }
    fn users(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().users.clone()
    }
    fn add_user(&self, name: &str, password: UserPassword) -> Result<(), AdminError> {
        let stored = match password {
            UserPassword::Plain(p) => format!("enc({p})"),
            UserPassword::Encrypted(e) => e,
        };
        self.0.lock().unwrap().users.push((name.into(), stored));
        Ok(())
    }
    fn remove_user(&self, name: &str) -> Result<(), AdminError> {
        self.0.lock().unwrap().users.retain(|u| u.0 != name);
        Ok(())
    }
    fn save_config(&self) -> Result<(), AdminError> {
        self.0.lock().unwrap().saves += 1;
        Ok(())
    }
    fn version(&self) -> String {
        "rwproxy 0.1.0".into()
    }
    fn stats(&self) -> Vec<BackendStats> {
        self.backends()
            .into_iter()
            .map(|b| BackendStats {
                ndx: b.ndx,
                address: b.address,
                state: b.state,
                role: b.role,
                weight: b.weight,
                conns_in_use: 1,
                conns_idle: 2,
                queries: 30,
                errors: 0,
                avg_latency_us: 450,
                lag_seconds: (b.role == BackendRole::ReadOnly).then_some(0),
                reason: None,
            })
            .collect()
    }
    fn sessions(&self) -> Vec<SessionInfo> {
        vec![SessionInfo {
            id: 7,
            client: "127.0.0.1:40000".into(),
            user: "app".into(),
            schema: None,
            backend: Some("10.0.0.1:3306".into()),
            in_transaction: true,
            statement: Some("UPDATE t SET a = 1".into()),
            statement_age_ms: Some(15),
            last_gtid: Some("0-1-7".into()),
        }]
    }
    fn digests(&self) -> Vec<DigestInfo> {
        vec![DigestInfo {
            digest: "SELECT * FROM t WHERE id = ?".into(),
            count: 3,
            total_time_us: 900,
            max_time_us: 500,
            rows: 3,
        }]
    }
    fn vrrp(&self) -> Vec<VrrpInfo> {
        vec![]
    }
    fn variables(&self) -> Vec<(String, String)> {
        self.0.lock().unwrap().vars.clone()
    }
    fn kill_session(&self, id: u64, query_only: bool) -> Result<(), AdminError> {
        if id > 100 {
            return Err(AdminError::failed(format!("Unknown thread id: {id}")));
        }
        self.0.lock().unwrap().kills.push((id, query_only));
        Ok(())
    }
    fn is_writable(&self, name: &str) -> bool {
        name != "read_your_writes"
    }
    fn set_variables(&self, settings: &[(String, String)]) -> Result<(), AdminError> {
        let mut s = self.0.lock().unwrap();
        if let Some((name, _)) = settings
            .iter()
            .find(|(n, _)| !s.vars.iter().any(|v| v.0 == *n))
        {
            return Err(AdminError::UnknownVariable(name.clone()));
        }
        for (name, value) in settings {
            if let Some(v) = s.vars.iter_mut().find(|v| v.0 == *name) {
                v.1 = value.clone();
            }
        }
        Ok(())
    }
}

fn rows(sql: &str, cp: &dyn ControlPlane) -> ResultSet {
    match execute(sql, cp) {
        Ok(Reply::Rows(rs)) => rs,
        other => panic!("{sql:?}: {other:?}"),
    }
}

fn text(rs: &ResultSet) -> Vec<Vec<&str>> {
    rs.rows
        .iter()
        .map(|r| r.iter().map(|v| v.as_deref().unwrap_or("NULL")).collect())
        .collect()
}

#[test]
fn kill_reaches_the_control_plane() {
    let cp = Memory::new();
    for sql in ["KILL 3", "kill query 4;", "KILL CONNECTION 5"] {
        assert!(matches!(execute(sql, &cp), Ok(Reply::Ok { .. })), "{sql}");
    }
    assert_eq!(
        cp.0.lock().unwrap().kills,
        [(3, false), (4, true), (5, false)]
    );
    let e = execute("KILL 999", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (1105, "Unknown thread id: 999".into())
    );
}

#[test]
fn backends_table_is_atlas_shaped() {
    let cp = Memory::new();
    let rs = rows("SELECT * FROM backends", &cp);
    assert_eq!(rs.columns, ["backend_ndx", "address", "state", "type"]);
    assert_eq!(
        text(&rs),
        [
            ["1", "10.0.0.1:3306", "up", "rw"],
            ["2", "10.0.0.2:3306", "up", "ro"],
            ["3", "db3.example:3307", "down", "ro"],
        ]
    );
}

#[test]
fn set_offline_and_online_answer_with_the_row() {
    let cp = Memory::new();
    let rs = rows("set offline 2;", &cp);
    assert_eq!(rs.columns, ["backend_ndx", "address", "state", "type"]);
    assert_eq!(text(&rs), [["2", "10.0.0.2:3306", "offline", "ro"]]);
    assert_eq!(
        text(&rows("SET ONLINE 2", &cp)),
        [["2", "10.0.0.2:3306", "unknown", "ro"]]
    );
    let e = execute("set offline 9", &cp).unwrap_err();
    assert_eq!((e.code(), e.sqlstate()), (1105, "HY000"));
    assert!(e.message().contains("backend 9 does not exist"));
}

#[test]
fn changes_answer_with_atlas_empty_status_set() {
    let cp = Memory::new();
    for sql in [
        "ADD SLAVE 10.0.0.4@3",
        "add master [::1]:3310",
        "remove backend 3",
        "add client 10.1.1.1",
        "remove client 127.0.0.1",
        "add pwd bob:pw",
        "add enpwd carol:KsWNCR6qyNk=",
        "remove pwd app",
        "save config",
    ] {
        let rs = rows(sql, &cp);
        assert_eq!(rs.columns, ["status"], "{sql}");
        assert!(rs.rows.is_empty(), "{sql}");
    }
    assert_eq!(
        text(&rows("select * from backends", &cp)),
        [
            ["1", "10.0.0.1:3306", "up", "rw"],
            ["2", "[::1]:3310", "unknown", "rw"],
            // the new master moved 10.0.0.2 to ndx 3 before REMOVE BACKEND 3 ran
            ["3", "db3.example:3307", "down", "ro"],
            ["4", "10.0.0.4:3306", "unknown", "ro"],
        ]
    );
    assert_eq!(cp.backends()[3].weight, 3);
    let rs = rows("SELECT * FROM clients", &cp);
    assert_eq!(rs.columns, ["client"]);
    assert_eq!(text(&rs), [["10.1.1.1"]]);
    let rs = rows("SELECT * FROM pwds", &cp);
    assert_eq!(rs.columns, ["username", "password"]);
    assert_eq!(text(&rs), [["bob", "enc(pw)"], ["carol", "KsWNCR6qyNk="]]);
    assert_eq!(cp.0.lock().unwrap().saves, 1);
}

#[test]
fn control_plane_refusals_become_1105() {
    let cp = Memory::new();
    let e = execute("add slave 10.0.0.2:3306", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.sqlstate(), e.message().as_str()),
        (1105, "HY000", "backend 10.0.0.2:3306 already exists")
    );
    let e = execute("remove backend 4", &cp).unwrap_err();
    assert_eq!(e, AdminError::NoSuchBackend { ndx: 4 });
    let e = execute("remove client 1.2.3.4", &cp).unwrap_err();
    assert!(e.message().contains("does not exist"));
    let e = execute("select * from tables", &cp).unwrap_err();
    assert_eq!((e.code(), e.sqlstate()), (1064, "42000"));
}

#[test]
fn help_lists_atlas_commands_first() {
    let cp = Memory::new();
    let rs = rows("select * from help", &cp);
    assert_eq!(rs.columns, ["command", "description"]);
    let cmds: Vec<&str> = rs.rows.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(
        cmds[..16],
        [
            "SELECT * FROM help",
            "SELECT * FROM backends",
            "SET OFFLINE $backend_id",
            "SET ONLINE $backend_id",
            "ADD MASTER $backend",
            "ADD SLAVE $backend",
            "REMOVE BACKEND $backend_id",
            "SELECT * FROM clients",
            "ADD CLIENT $client",
            "REMOVE CLIENT $client",
            "SELECT * FROM pwds",
            "ADD PWD $pwd",
            "ADD ENPWD $pwd",
            "REMOVE PWD $pwd",
            "SAVE CONFIG",
            "SELECT VERSION",
        ]
    );
    assert!(cmds.contains(&"SELECT * FROM stats"));
}

#[test]
fn version() {
    let cp = Memory::new();
    let rs = rows("SELECT VERSION", &cp);
    assert_eq!(rs.columns, ["version"]);
    assert_eq!(text(&rs), [["rwproxy 0.1.0"]]);
    let rs = rows("select version()", &cp);
    assert_eq!(rs.columns, ["version()"]);
    assert_eq!(text(&rs), [["rwproxy 0.1.0"]]);
}

#[test]
fn extra_tables() {
    let cp = Memory::new();
    let rs = rows("select * from stats", &cp);
    assert_eq!(
        rs.columns,
        [
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
            "reason"
        ]
    );
    assert_eq!(
        text(&rs)[0],
        [
            "1",
            "10.0.0.1:3306",
            "up",
            "rw",
            "1",
            "1",
            "2",
            "30",
            "0",
            "450",
            "NULL",
            "NULL"
        ]
    );
    assert_eq!(text(&rs)[1][4], "2");
    let rs = rows("select * from sessions", &cp);
    assert_eq!(
        rs.columns,
        [
            "id",
            "client",
            "user",
            "db",
            "backend",
            "in_transaction",
            "statement",
            "statement_age_ms",
            "last_gtid"
        ]
    );
    assert_eq!(
        text(&rs),
        [[
            "7",
            "127.0.0.1:40000",
            "app",
            "NULL",
            "10.0.0.1:3306",
            "1",
            "UPDATE t SET a = 1",
            "15",
            "0-1-7"
        ]]
    );
    let rs = rows("select * from digests", &cp);
    assert_eq!(
        rs.columns,
        ["digest", "count", "total_time_us", "max_time_us", "rows"]
    );
    assert_eq!(
        text(&rs),
        [["SELECT * FROM t WHERE id = ?", "3", "900", "500", "3"]]
    );
    let rs = rows("select * from vrrp", &cp);
    assert_eq!(rs.columns.len(), 8);
    assert!(rs.rows.is_empty());
}

#[test]
fn variables() {
    let cp = Memory::new();
    let rs = rows("show variables", &cp);
    assert_eq!(rs.columns, ["Variable_name", "Value"]);
    assert_eq!(
        text(&rs),
        [["max_replica_lag", "60"], ["read_your_writes", "OFF"]]
    );
    assert_eq!(
        text(&rows("show variables like 'MAX\\_%'", &cp)),
        [["max_replica_lag", "60"]]
    );
    assert!(rows("show variables like 'nothing'", &cp).rows.is_empty());
    assert_eq!(
        execute("SET max_replica_lag = 5", &cp).unwrap(),
        Reply::Ok {
            affected: 0,
            info: String::new()
        }
    );
    assert_eq!(text(&rows("select @@max_replica_lag", &cp)), [["5"]]);
    let e = execute("set global nope = 1", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (1193, "Unknown system variable 'nope'")
    );
    // A runtime setting is the proxy's: SET SESSION of one is refused, not ignored.
    let e = execute("SET SESSION max_replica_lag = 9", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.sqlstate(), e.message().as_str()),
        (
            1229,
            "HY000",
            "Variable 'max_replica_lag' is a GLOBAL variable and should be set with SET GLOBAL"
        )
    );
    assert_eq!(text(&rows("select @@max_replica_lag", &cp)), [["5"]]);
    // A mistyped one too, as without `SESSION`.
    let e = execute("SET SESSION drain_timout = 5", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (1193, "Unknown system variable 'drain_timout'")
    );
    let e = execute("SET @@session.read_your_writes = ON", &cp).unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (1238, "Variable 'read_your_writes' is a read only variable")
    );
    // session statements from drivers do not touch the control plane
    assert_eq!(execute("SET NAMES utf8mb4", &cp).unwrap(), Reply::ok());
    assert_eq!(
        execute("SET SESSION sql_mode = ''", &cp).unwrap(),
        Reply::ok()
    );
    assert_eq!(execute("set autocommit=1", &cp).unwrap(), Reply::ok());
}

#[test]
fn the_mariadb_cli_works() {
    let cp = Memory::new();
    let mut ctx = ExecContext {
        user: "admin@127.0.0.1".into(),
        schema: None,
        connection_id: 42,
    };
    let mut run = |sql: &str| match execute_in(sql, &cp, &mut ctx) {
        Ok(Reply::Rows(rs)) => (
            rs.columns.clone(),
            text(&rs)
                .iter()
                .map(|r| r.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .collect::<Vec<_>>(),
        ),
        Ok(Reply::Ok { .. }) => (vec![], vec![]),
        Err(e) => panic!("{sql:?}: {e}"),
    };
    let (cols, vals) = run("select @@version_comment limit 1");
    assert_eq!(cols, ["@@version_comment"]);
    assert_eq!(vals, [["rwproxy admin console"]]);
    assert_eq!(run("SELECT DATABASE()").1, [["NULL"]]);
    run("use shop");
    let (cols, vals) = run("select DATABASE(), USER() limit 1");
    assert_eq!(cols, ["DATABASE()", "USER()"]);
    assert_eq!(vals, [["shop", "admin@127.0.0.1"]]);
    let (cols, vals) = run("select @@character_set_client, @@character_set_connection, @@character_set_server, @@character_set_database limit 1");
    assert_eq!(cols.len(), 4);
    assert_eq!(vals, [["utf8mb4", "utf8mb4", "utf8mb4", "utf8mb4"]]);
    assert_eq!(
        run("show databases"),
        (vec!["Database".to_string()], vec![])
    );
    assert_eq!(run("show tables").0, ["Tables_in_shop"]);
    // mysql_async's setup query when not told the values
    let (cols, vals) = run("SELECT @@max_allowed_packet,@@wait_timeout,@@socket");
    assert_eq!(cols, ["@@max_allowed_packet", "@@wait_timeout", "@@socket"]);
    assert_eq!(vals, [["16777216", "28800", "NULL"]]);
    assert_eq!(run("select connection_id()").1, [["42"]]);
    let e = execute("select @@no_such_thing", &cp).unwrap_err();
    assert_eq!(e.code(), 1193);
}
