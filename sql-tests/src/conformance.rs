//! Other projects' driver test suites run against the sandbox and through rwproxy: reading
//! their runners' output and holding it against a checked-in list of expected failures.
//!
//! The list is what keeps the comparison honest in both directions: a test that newly fails
//! through the proxy is a regression, and a listed test that starts passing must be taken off
//! the list, so the list never hides a fix nor grows stale.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Passed,
    Failed,
    Skipped,
}

/// Every test a suite ran, by name.
#[derive(Debug, Default)]
pub struct Outcome {
    pub tests: BTreeMap<String, Status>,
}

impl Outcome {
    pub fn count(&self, status: Status) -> usize {
        self.tests.values().filter(|s| **s == status).count()
    }

    pub fn failed(&self) -> Vec<&str> {
        self.names(Status::Failed)
    }

    fn names(&self, status: Status) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|(_, s)| **s == status)
            .map(|(n, _)| n.as_str())
            .collect()
    }

    /// `passed P, failed F, skipped S`, the row of a conformance table.
    pub fn summary(&self) -> String {
        format!(
            "passed {}, failed {}, skipped {}",
            self.count(Status::Passed),
            self.count(Status::Failed),
            self.count(Status::Skipped)
        )
    }

    /// Adds another run's tests (e.g. a second test binary of the same suite); a name
    /// reported twice would make the comparison ambiguous, so it is an error.
    pub fn merge(&mut self, other: Outcome) -> Result<()> {
        for (name, status) in other.tests {
            if self.tests.insert(name.clone(), status).is_some() {
                bail!("test {name} reported twice");
            }
        }
        Ok(())
    }

    /// Rust's libtest: `test NAME ... ok|FAILED|ignored`, where NAME may carry
    /// ` - should panic`.
    pub fn parse_libtest(output: &str) -> Outcome {
        let mut tests = BTreeMap::new();
        for line in output.lines() {
            let Some(rest) = line.strip_prefix("test ") else {
                continue;
            };
            let Some((name, result)) = rest.rsplit_once(" ... ") else {
                continue;
            };
            let status = match result.trim() {
                "ok" => Status::Passed,
                "FAILED" => Status::Failed,
                r if r.starts_with("ignored") => Status::Skipped,
                _ => continue,
            };
            let name = name.split(" - ").next().unwrap_or(name).trim();
            tests.insert(name.to_string(), status);
        }
        Outcome { tests }
    }

    /// pytest in `-v` mode: `path::Class::test PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS [ nn%]`.
    /// An expected failure (XFAIL) counts as passed, an unexpected pass (XPASS) as failed,
    /// as pytest itself judges them; ERROR (a fixture failed) counts as failed.
    pub fn parse_pytest(output: &str) -> Outcome {
        let mut tests = BTreeMap::new();
        for line in output.lines() {
            let mut words = line.split_whitespace();
            let (Some(name), Some(result)) = (words.next(), words.next()) else {
                continue;
            };
            if !name.contains("::") {
                continue;
            }
            let status = match result {
                "PASSED" | "XFAIL" => Status::Passed,
                "FAILED" | "ERROR" | "XPASS" => Status::Failed,
                "SKIPPED" => Status::Skipped,
                _ => continue,
            };
            // A test that fails and then errors in teardown is reported twice; failed wins.
            let e = tests.entry(name.to_string()).or_insert(status);
            if status == Status::Failed {
                *e = status;
            }
        }
        Outcome { tests }
    }
}

/// A checked-in expected-failures list: one test per line, its name, whitespace, then why
/// it fails through the proxy. `#` starts a comment line.
pub fn parse_expected(text: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if reason.trim().is_empty() {
            bail!("line {}: {name} has no reason", i + 1);
        }
        if out
            .insert(name.to_string(), reason.trim().to_string())
            .is_some()
        {
            bail!("line {}: {name} listed twice", i + 1);
        }
    }
    Ok(out)
}

/// The reason of an expected failure whose outcome through the proxy depends on which pooled
/// backend connection answers (a session counter, say): it may pass as well.
const VARIES: &str = "varies:";

/// Holds a through-proxy run against the expected failures: every problem found, as one
/// message per problem (empty when the run conforms).
pub fn check_expected(proxied: &Outcome, expected: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in proxied.failed() {
        if !expected.contains_key(name) {
            problems.push(format!(
                "{name} fails through rwproxy and is not expected to"
            ));
        }
    }
    for (name, reason) in expected {
        match proxied.tests.get(name) {
            Some(Status::Failed) => {}
            Some(Status::Passed) if reason.starts_with(VARIES) => {}
            Some(Status::Passed) => problems.push(format!(
                "{name} passes through rwproxy now: take it off the expected-failures list \
                 (it said: {reason})"
            )),
            Some(Status::Skipped) => problems.push(format!(
                "{name} was skipped, so its expected failure ({reason}) went unchecked"
            )),
            None => problems.push(format!(
                "{name} is on the expected-failures list but the suite has no such test"
            )),
        }
    }
    problems
}

/// Runs `cmd` to completion, killing it after `limit` so a hang in the proxy fails the test
/// instead of stalling CI. Returns stdout and stderr together.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {cmd:?}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = format!(
        "{}\n{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    if status.is_none() {
        bail!("{cmd:?} did not finish in {limit:?}; its output:\n{text}");
    }
    Ok(text)
}

/// Copies a directory tree once: a later call finds the marker and leaves the copy alone,
/// so its timestamps stay put and cargo does not rebuild it.
pub fn copy_tree_once(from: &Path, to: &Path) -> Result<()> {
    let marker = to.join(".rwproxy-copied");
    if marker.exists() {
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(to);
    crate::sandbox::copy_dir(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::write(&marker, from.display().to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines() {
        let o = Outcome::parse_libtest(
            "running 4 tests\n\
             test a::b ... ok\n\
             test a::c - should panic ... ok\n\
             test a::d ... FAILED\n\
             test a::e ... ignored, needs a server\n\
             test result: FAILED. 2 passed; 1 failed; 1 ignored\n",
        );
        assert_eq!(o.summary(), "passed 2, failed 1, skipped 1");
        assert_eq!(o.tests["a::c"], Status::Passed);
        assert_eq!(o.failed(), ["a::d"]);
    }

    #[test]
    fn pytest_lines() {
        let o = Outcome::parse_pytest(
            "t/test_x.py::T::test_a PASSED                [ 10%]\n\
             t/test_x.py::T::test_b FAILED                [ 20%]\n\
             t/test_x.py::T::test_b ERROR                 [ 20%]\n\
             t/test_x.py::T::test_c SKIPPED (no socket)   [ 30%]\n\
             t/test_x.py::T::test_d XFAIL                 [ 40%]\n\
             FAILED t/test_x.py::T::test_b - AssertionError\n",
        );
        assert_eq!(o.summary(), "passed 2, failed 1, skipped 1");
    }

    #[test]
    fn expected_list_is_checked_both_ways() {
        let expected = parse_expected(
            "# comment\n\
             a::fails   KILL is pending\n\
             a::passes  was broken once\n\
             a::gone    renamed upstream\n",
        )
        .unwrap();
        let o = Outcome::parse_libtest(
            "test a::fails ... FAILED\ntest a::passes ... ok\ntest a::new ... FAILED\n",
        );
        let problems = check_expected(&o, &expected);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].starts_with("a::new fails"));
        assert!(problems[1].contains("a::gone"));
        assert!(problems[2].starts_with("a::passes passes"));
    }

    #[test]
    fn varying_entries_may_pass_but_must_run() {
        let expected = parse_expected(
            "a::counter  varies: reads a pooled connection's counter
             a::skipped  varies: the same
",
        )
        .unwrap();
        let o = Outcome::parse_libtest(
            "test a::counter ... ok
test a::skipped ... ignored, needs a server
",
        );
        let problems = check_expected(&o, &expected);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("a::skipped was skipped"),
            "{problems:?}"
        );
    }

    #[test]
    fn expected_entries_need_a_reason() {
        assert!(parse_expected("a::b\n").is_err());
        assert!(parse_expected("a::b why\na::b why again\n").is_err());
    }
}
