//! PDFs are read in a child process — this binary re-run as `gptbot read-pdf` — under a
//! hard address-space cap (`files.parse_memory`), a CPU limit and a wall-clock deadline
//! (`files.parse_timeout`), with no environment (no secrets) and a page limit
//! (`files.max_pdf_pages`).
//!
//! Why a process and not a bounded inflate: `lopdf` (under `pdf-extract`) inflates object
//! and content streams with no cap, and a 3 MB PDF whose page stream inflates to 3 GiB
//! took the bot to 6.4 GB; neither `catch_unwind` nor a blocking-pool deadline stops an
//! allocation or a loop in a library we do not own. A child under `RLIMIT_AS` simply
//! fails its allocation (and aborts), a deadline kills it, and the bot's own memory never
//! sees the inflated bytes. The price is one process start per PDF (BENCHMARKS.md).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The first argument that makes the binary a PDF reader instead of the bot.
pub const CHILD_COMMAND: &str = "read-pdf";

/// How the child says why it did not print text.
const EXIT_TOO_MANY_PAGES: i32 = 3;
const EXIT_NO_TEXT: i32 = 4;
const EXIT_UNREADABLE: i32 = 5;

/// Why a PDF's text could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error("the PDF has {pages} pages")]
    TooManyPages { pages: u64 },
    #[error("the PDF has no text")]
    NoText,
    #[error("the PDF could not be parsed")]
    Unreadable,
    /// Past the memory cap or the deadline (an inflating stream, a parser loop).
    #[error("reading the PDF went past its memory or time budget")]
    TooLarge,
    #[error("the PDF reader could not be run")]
    Spawn(#[source] std::io::Error),
}

/// Runs the child that reads PDFs; a few at a time (each may use `memory`).
#[derive(Debug, Clone)]
pub struct PdfReader {
    exe: PathBuf,
    max_pages: u32,
    timeout: Duration,
    memory: u64,
    permits: Arc<tokio::sync::Semaphore>,
}

impl PdfReader {
    pub fn new(exe: PathBuf, max_pages: u32, timeout: Duration, memory: u64) -> PdfReader {
        let at_once = std::thread::available_parallelism().map_or(2, |n| n.get());
        PdfReader {
            exe,
            max_pages,
            timeout,
            memory,
            permits: Arc::new(tokio::sync::Semaphore::new(at_once)),
        }
    }

    /// `files.*` as configured; the reader is this executable unless `files.reader` says
    /// otherwise (the tests name the built binary, as their own executable is not it).
    pub fn from_settings(files: &crate::config::FileSettings) -> std::io::Result<PdfReader> {
        let exe = match &files.reader {
            Some(path) => path.clone(),
            None => std::env::current_exe()?,
        };
        Ok(PdfReader::new(
            exe,
            files.max_pdf_pages,
            files.parse_timeout,
            files.parse_memory,
        ))
    }

    pub fn max_pages(&self) -> u32 {
        self.max_pages
    }

    /// The text of `pdf`, cut at `max_chars` with a note (see [`super::files::cut`]).
    pub async fn read(&self, pdf: Vec<u8>, max_chars: usize) -> Result<String, PdfError> {
        let _permit = self.permits.acquire().await.ok();
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(CHILD_COMMAND)
            .arg(self.max_pages.to_string())
            .arg(max_chars.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        #[cfg(unix)]
        {
            let memory = self.memory;
            let cpu_seconds = self.timeout.as_secs() + 1;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and
            // exec.
            unsafe {
                command.pre_exec(move || limit(memory, cpu_seconds));
            }
        }
        let mut child = command.spawn().map_err(PdfError::Spawn)?;
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(PdfError::Spawn(std::io::Error::other("no pipes")));
        };
        // The child prints at most `max_chars` characters and a note.
        let cap = (max_chars as u64)
            .saturating_mul(4)
            .saturating_add(64 * 1024);
        let outcome = tokio::time::timeout(self.timeout, async {
            let feed = async move {
                // A child that stops reading (refused the file, or died) closes the pipe.
                let _ = stdin.write_all(&pdf).await;
            };
            let mut out = Vec::new();
            let mut limited = stdout.take(cap);
            let collect = limited.read_to_end(&mut out);
            let (_, read) = tokio::join!(feed, collect);
            let status = child.wait().await;
            (read.map(|_| out), status)
        })
        .await;
        let (out, status) = match outcome {
            Ok((Ok(out), Ok(status))) => (out, status),
            Ok((_, Err(e))) | Ok((Err(e), _)) => return Err(PdfError::Spawn(e)),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                return Err(PdfError::TooLarge);
            }
        };
        match status.code() {
            Some(0) => Ok(String::from_utf8_lossy(&out).into_owned()),
            Some(EXIT_TOO_MANY_PAGES) => Err(PdfError::TooManyPages {
                pages: String::from_utf8_lossy(&out).trim().parse().unwrap_or(0),
            }),
            Some(EXIT_NO_TEXT) => Err(PdfError::NoText),
            // Killed by a signal: its allocation failed under the cap (abort), or the
            // CPU limit (SIGXCPU).
            None => Err(PdfError::TooLarge),
            // A parser panic (101), a malformed file.
            Some(_) => Err(PdfError::Unreadable),
        }
    }
}

/// The child's limits, set between fork and exec.
#[cfg(unix)]
fn limit(memory: u64, cpu_seconds: u64) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: a plain system call with a valid pointer.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    set(libc::RLIMIT_AS, memory)?;
    set(libc::RLIMIT_CPU, cpu_seconds)?;
    // An abort under the cap must not write a core file the size of the cap.
    set(libc::RLIMIT_CORE, 0)?;
    // Should the machine (or the container) run short of memory anyway, the kernel
    // kills the reader first, not the bot. Raising one's own score needs no privilege;
    // where /proc is not there, nothing is lost.
    // SAFETY: open, write and close with constant, valid arguments (async-signal-safe).
    unsafe {
        let fd = libc::open(c"/proc/self/oom_score_adj".as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::write(fd, b"1000".as_ptr().cast(), 4);
            libc::close(fd);
        }
    }
    Ok(())
}

/// The child: reads a PDF from standard input, prints its text (cut) and exits 0, or
/// exits with the code that says why not. `args` are `<max pages> <max chars>`.
pub fn child_main(args: &[String]) -> u8 {
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<usize>().ok());
    let (Some(max_pages), Some(max_chars)) = (number(0), number(1)) else {
        eprintln!("usage: gptbot {CHILD_COMMAND} <max pages> <max chars> < file.pdf");
        return 2;
    };
    let mut pdf = Vec::new();
    if std::io::stdin().read_to_end(&mut pdf).is_err() {
        return EXIT_UNREADABLE as u8;
    }
    let mut out = std::io::stdout().lock();
    let (code, printed) = match extract(&pdf, max_pages) {
        Ok(text) if text.trim().is_empty() => (EXIT_NO_TEXT, String::new()),
        Ok(text) => (0, super::files::cut(&text, max_chars)),
        Err(Refusal::Pages(n)) => (EXIT_TOO_MANY_PAGES, n.to_string()),
        Err(Refusal::Unreadable) => (EXIT_UNREADABLE, String::new()),
    };
    let _ = out.write_all(printed.as_bytes());
    let _ = out.flush();
    code as u8
}

enum Refusal {
    Pages(usize),
    Unreadable,
}

fn extract(pdf: &[u8], max_pages: usize) -> Result<String, Refusal> {
    let mut doc = pdf_extract::Document::load_mem(pdf).map_err(|_| Refusal::Unreadable)?;
    // As pdf-extract does: an encrypted PDF with an empty user password opens.
    if doc.is_encrypted() {
        doc.decrypt("").map_err(|_| Refusal::Unreadable)?;
    }
    let pages = doc.get_pages().len();
    if pages > max_pages {
        return Err(Refusal::Pages(pages));
    }
    let mut text = String::new();
    pdf_extract::output_doc(&doc, &mut pdf_extract::PlainTextOutput::new(&mut text))
        .map_err(|_| Refusal::Unreadable)?;
    Ok(text)
}
