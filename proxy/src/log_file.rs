//! Log files (`log-path`: the log and the SQL log), reopened by name after SIGHUP:
//! logrotate renames a file and signals, and without a reopen every later line would go on
//! into the renamed one.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counts SIGHUPs: a writer that opened its file at an older count opens it again.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every log file open again by its name before its next line (on SIGHUP).
pub fn reopen() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

fn open(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// A file written line by line that follows [`reopen`].
pub struct Reopening {
    path: PathBuf,
    file: File,
    generation: u64,
}

impl Reopening {
    pub fn open(path: &Path) -> io::Result<Reopening> {
        Ok(Reopening {
            path: path.to_path_buf(),
            generation: GENERATION.load(Ordering::Relaxed),
            file: open(path)?,
        })
    }

    /// The file to write the next line to: the one at the path now, after a [`reopen`].
    fn current(&mut self) -> &mut File {
        let now = GENERATION.load(Ordering::Relaxed);
        if now != self.generation {
            self.generation = now;
            match open(&self.path) {
                Ok(f) => self.file = f,
                // Keep writing where we can; the next SIGHUP tries again.
                Err(e) => {
                    let _ = writeln!(
                        self.file,
                        "cannot reopen log file {}: {e}",
                        self.path.display()
                    );
                }
            }
        }
        &mut self.file
    }
}

impl Write for Reopening {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.current().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The main log, shared by every thread that logs (tracing's `MakeWriter` is any closure
/// returning a writer: [`LogFile::writer`]).
pub struct LogFile(Mutex<Reopening>);

impl LogFile {
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        Ok(Arc::new(LogFile(Mutex::new(Reopening::open(path)?))))
    }

    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter(self.clone())
    }
}

pub struct LogWriter(Arc<LogFile>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
             .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}
