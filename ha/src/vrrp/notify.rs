//! Notify hooks, as keepalived runs them.
//!
//! `notify_master`, `notify_backup`, `notify_fault` and `notify_stop` run with their configured
//! words only; `notify` runs with `INSTANCE <name> <STATE> <priority>` appended. The configured
//! string is split into an argv the way keepalived splits it (whitespace, `'…'`, `"…"`, `\`) and
//! exec'd directly: there is no shell. Hooks run one at a time per instance, in transition order,
//! each with a timeout; exit status and output are logged.

use std::process::Stdio;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::state::NotifyKind;

/// The hooks of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyConfig {
    pub master: Option<String>,
    pub backup: Option<String>,
    pub fault: Option<String>,
    pub stop: Option<String>,
    /// The generic hook, called with `INSTANCE <name> <STATE> <priority>` appended.
    pub notify: Option<String>,
    /// Per hook; `None`: 10 s.
    pub timeout: Option<Duration>,
}

/// Splits a configured command line into words: whitespace separates words; `'…'` is literal;
/// `"…"` is literal except `\"` and `\\`; elsewhere `\` escapes the next character.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unterminated \" in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(format!("trailing \\ in {s:?}")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The argvs to run, in order, for a transition: the state's own hook, then `notify`.
pub fn argvs(
    cfg: &NotifyConfig,
    instance: &str,
    kind: NotifyKind,
    priority: u8,
) -> Vec<Result<Vec<String>, String>> {
    let specific = match kind {
        NotifyKind::Master => &cfg.master,
        NotifyKind::Backup => &cfg.backup,
        NotifyKind::Fault => &cfg.fault,
        NotifyKind::Stop => &cfg.stop,
    };
    let mut out = Vec::new();
    if let Some(s) = specific {
        out.push(split_words(s));
    }
    if let Some(s) = &cfg.notify {
        out.push(split_words(s).map(|mut w| {
            w.extend([
                "INSTANCE".to_string(),
                instance.to_string(),
                kind.word().to_string(),
                priority.to_string(),
            ]);
            w
        }));
    }
    out
}

async fn run_one(instance: &str, argv: Vec<String>, timeout: Duration) {
    let Some((prog, args)) = argv.split_first() else {
        return;
    };
    let child = crate::script::command(prog)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(instance, ?argv, "notify: cannot run: {e}");
            return;
        }
    };
    let pid = child.id();
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                tracing::info!(instance, ?argv, %stdout, %stderr, "notify: exited 0");
            } else {
                tracing::warn!(instance, ?argv, status = %out.status, %stdout, %stderr, "notify: failed");
            }
        }
        Ok(Err(e)) => tracing::warn!(instance, ?argv, "notify: wait failed: {e}"),
        Err(_) => {
            crate::script::kill_group(pid);
            tracing::warn!(instance, ?argv, ?timeout, "notify: timed out, killed")
        }
    }
}

/// Runs an instance's hooks serially in the background.
pub struct Notifier {
    tx: mpsc::UnboundedSender<(NotifyKind, u8)>,
    task: JoinHandle<()>,
}

impl Notifier {
    pub fn spawn(instance: String, cfg: NotifyConfig) -> Notifier {
        let (tx, mut rx) = mpsc::unbounded_channel::<(NotifyKind, u8)>();
        let task = tokio::spawn(async move {
            let timeout = cfg.timeout.unwrap_or(Duration::from_secs(10));
            while let Some((kind, prio)) = rx.recv().await {
                for argv in argvs(&cfg, &instance, kind, prio) {
                    match argv {
                        Ok(argv) => run_one(&instance, argv, timeout).await,
                        Err(e) => tracing::warn!(instance, "notify: {e}"),
                    }
                }
            }
        });
        Notifier { tx, task }
    }

    pub fn notify(&self, kind: NotifyKind, priority: u8) {
        let _ = self.tx.send((kind, priority));
    }

    /// Waits until every queued hook has run.
    pub async fn finish(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn splitting() {
        assert_eq!(w("/bin/echo a  b"), ["/bin/echo", "a", "b"]);
        assert_eq!(
            w("  x 'a b' \"c \\\" d\" e\\ f "),
            ["x", "a b", "c \" d", "e f"]
        );
        assert_eq!(w("a'b'\"c\""), ["abc"]);
        assert_eq!(w("''"), [""]);
        assert!(w("").is_empty());
        assert!(split_words("'open").is_err());
        assert!(split_words("\"open").is_err());
        // No shell: metacharacters are plain words.
        assert_eq!(w("rm -rf $HOME; echo"), ["rm", "-rf", "$HOME;", "echo"]);
    }

    #[test]
    fn argv_convention_matches_keepalived() {
        let cfg = NotifyConfig {
            master: Some("/usr/local/bin/to-master arg1".into()),
            notify: Some("/usr/bin/rwproxy notify".into()),
            ..Default::default()
        };
        let a = argvs(&cfg, "VI_1", NotifyKind::Master, 150);
        assert_eq!(
            a[0].as_ref().unwrap(),
            &["/usr/local/bin/to-master", "arg1"]
        );
        assert_eq!(
            a[1].as_ref().unwrap(),
            &[
                "/usr/bin/rwproxy",
                "notify",
                "INSTANCE",
                "VI_1",
                "MASTER",
                "150"
            ]
        );
        let a = argvs(&cfg, "VI_1", NotifyKind::Stop, 0);
        assert_eq!(a.len(), 1);
        assert_eq!(
            a[0].as_ref().unwrap(),
            &[
                "/usr/bin/rwproxy",
                "notify",
                "INSTANCE",
                "VI_1",
                "STOP",
                "0"
            ]
        );
    }

    #[tokio::test]
    async fn hooks_run_serially_in_order_with_a_timeout() {
        let dir = std::env::temp_dir().join(format!("rwproxy-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let script = dir.join("hook.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nsleep 0.05\necho \"$*\" >> '{}'\n[ \"$1\" = slow ] && sleep 60\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = script.display().to_string();
        let cfg = NotifyConfig {
            master: Some(format!("{s} master-hook 'two words'")),
            backup: Some(format!("{s} slow")),
            notify: Some(s.clone()),
            // Room for a loaded machine (a CI build beside it) to start the hook and reach its
            // `echo`: at 500 ms the slow hook was once cut off before it.
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let n = Notifier::spawn("VI_T".into(), cfg);
        n.notify(NotifyKind::Backup, 100);
        n.notify(NotifyKind::Master, 100);
        n.notify(NotifyKind::Stop, 100);
        let t = std::time::Instant::now();
        n.finish().await;
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the slow hook was not cut off"
        );
        let got = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            got,
            "slow\nINSTANCE VI_T BACKUP 100\nmaster-hook two words\nINSTANCE VI_T MASTER 100\nINSTANCE VI_T STOP 100\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
