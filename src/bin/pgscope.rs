//! `pgscope` command-line tool.
//!
//! ```text
//! pgscope fingerprint [-z]     read statements from stdin, print `<16-hex id>\t<normalized>`
//! ```

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::sync::{Mutex, mpsc};

const HELP: &str = "\
pgscope — PostgreSQL statement tools

USAGE:
    pgscope fingerprint [-z]

COMMANDS:
    fingerprint    Read SQL statements from stdin and print one line per statement:
                   <16-hex fingerprint id><TAB><normalized SQL>
                   in input order. Statements are one per line, or NUL-separated with -z
                   (for statements that span lines). Literals and parameters become $1, $2, …;
                   IN/VALUES/ARRAY lists of constants collapse to (...); comments, whitespace
                   and keyword case are ignored. Malformed SQL still gets a line. Empty lines
                   are skipped. The id is XXH3-64 of the normalized text (stable).

OPTIONS:
    -z, --null     Statements are separated by NUL bytes instead of newlines
    -h, --help     Print this help

EXIT STATUS:
    0 on success, 1 when stdin cannot be read, 2 on a usage error.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") || args.is_empty() {
        print!("{HELP}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    match args[0].as_str() {
        "fingerprint" => {
            let mut nul = false;
            for a in &args[1..] {
                match a.as_str() {
                    "-z" | "--null" => nul = true,
                    other => {
                        eprintln!("pgscope fingerprint: unknown option `{other}` (see --help)");
                        return ExitCode::from(2);
                    }
                }
            }
            match fingerprint(nul) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("pgscope fingerprint: cannot read stdin: {e}");
                    ExitCode::from(1)
                }
            }
        }
        other => {
            eprintln!("pgscope: unknown command `{other}` (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Statements are read in blocks of about this size, cut at the last separator in each block.
/// Small enough that a few megabytes already keep every core busy and memory stays bounded
/// however big the input is; big enough that handing a block to a thread costs nothing.
const BLOCK: usize = 256 << 10;

/// A block of input and the buffer its output is rendered into, reused for the whole run.
struct Buffers {
    input: Vec<u8>,
    output: Vec<u8>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            input: Vec::new(),
            // Output is about the input's size plus a 17-byte id per line: one allocation.
            output: Vec::with_capacity(BLOCK + BLOCK / 2),
        }
    }
}

/// Reads stdin in blocks, renders them on every core, writes the output in input order. One
/// path for every machine: on one core it is one worker beside the reader and the writer.
///
/// Memory is bounded by the blocks in flight (a few per core), not by the input's size: the
/// reader waits for a block to be written before it reuses its buffers.
fn fingerprint(nul: bool) -> io::Result<()> {
    let sep = if nul { b'\0' } else { b'\n' };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stdin = io::stdin();
    let mut input = stdin.lock();
    // One block per worker, one being read and one being written.
    let in_flight = workers + 2;
    let (free_tx, free_rx) = mpsc::sync_channel::<Buffers>(in_flight);
    for _ in 0..in_flight {
        let _ = free_tx.send(Buffers::new());
    }
    let (job_tx, job_rx) = mpsc::sync_channel::<(u64, usize, Buffers)>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Buffers)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let job_rx = &job_rx;
            s.spawn(move || {
                loop {
                    // The lock is held only to take the next block, never while rendering.
                    let job = job_rx
                        .lock()
                        .map_err(|_| ())
                        .and_then(|rx| rx.recv().map_err(|_| ()));
                    let Ok((seq, len, mut bufs)) = job else {
                        return;
                    };
                    render(&bufs.input[..len], sep, &mut bufs.output);
                    if done_tx.send((seq, bufs)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let writer = s.spawn(move || -> io::Result<()> {
            // Each block's output is one large write of whole lines: stdout's own line buffer
            // passes it straight through, so no second buffer (and no copy into it) is needed.
            let mut out = io::stdout().lock();
            let mut next = 0u64;
            let mut waiting = std::collections::BTreeMap::new();
            for (seq, bufs) in done_rx {
                waiting.insert(seq, bufs);
                while let Some(bufs) = waiting.remove(&next) {
                    out.write_all(&bufs.output)?;
                    // The reader may have stopped (stdin failed): then nobody needs it back.
                    let _ = free_tx.send(bufs);
                    next += 1;
                }
            }
            out.flush()
        });
        let mut carry = Vec::new();
        let mut seq = 0u64;
        let read = loop {
            let Ok(mut bufs) = free_rx.recv() else {
                break Ok(()); // the writer stopped: its error is the one to report
            };
            match read_block(&mut input, &mut bufs.input, &mut carry, sep) {
                Ok(Some(len)) => {
                    if job_tx.send((seq, len, bufs)).is_err() {
                        break Ok(());
                    }
                    seq += 1;
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        drop(job_tx);
        drop(free_rx);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("writer thread panicked")));
        read.and(written)
    })
}

/// Fills `buf` with the statements left over from the last block (`carry`) and the next
/// block of input, up to its last separator; what follows that separator goes back to
/// `carry`. A statement longer than a block grows the buffer until it ends. Returns the length
/// of the block, or `None` at the end of input.
fn read_block(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    carry: &mut Vec<u8>,
    sep: u8,
) -> io::Result<Option<usize>> {
    if buf.len() < BLOCK + carry.len() {
        buf.resize(BLOCK + carry.len(), 0);
    }
    buf[..carry.len()].copy_from_slice(carry);
    let mut filled = carry.len();
    carry.clear();
    let mut scanned = 0;
    loop {
        while filled < buf.len() {
            match input.read(&mut buf[filled..]) {
                Ok(0) => return Ok((filled > 0).then_some(filled)),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(last) = memchr::memrchr(sep, &buf[scanned..filled]) {
            let end = scanned + last + 1;
            carry.extend_from_slice(&buf[end..filled]);
            return Ok(Some(end));
        }
        scanned = filled;
        let grown = buf.len() * 2;
        buf.resize(grown, 0);
    }
}

/// Renders one output line per statement of `part` into `out` (cleared first):
/// `<16-hex id>\t<normalized>\n`.
fn render(part: &[u8], sep: u8, out: &mut Vec<u8>) {
    out.clear();
    let mut text = String::new();
    match std::str::from_utf8(part) {
        Ok(part) => {
            let mut from = 0;
            for at in memchr::memchr_iter(sep, part.as_bytes()).chain([part.len()]) {
                // Cut at an ASCII byte (or the end): always a character boundary.
                if let Some(sql) = part.get(from..at) {
                    line(sql, &mut text, out);
                }
                from = at + 1;
            }
        }
        Err(_) => {
            for chunk in part.split(|&b| b == sep) {
                // Invalid UTF-8 is replaced, never rejected: every statement gets a line.
                line(&String::from_utf8_lossy(chunk), &mut text, out);
            }
        }
    }
}

fn line(sql: &str, text: &mut String, out: &mut Vec<u8>) {
    let sql = sql.trim_end_matches('\r');
    if sql.trim_start().is_empty() {
        return;
    }
    let id = pgscope::fingerprint_to(sql, text);
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut head = [b'\t'; 17];
    for (i, digit) in head[..16].iter_mut().enumerate() {
        *digit = DIGITS[((id >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&head);
    let start = out.len();
    out.extend_from_slice(text.as_bytes());
    // A quoted identifier may hold a newline or a tab; the line format cannot.
    if memchr::memchr2(b'\n', b'\t', text.as_bytes()).is_some() {
        for b in &mut out[start..] {
            if matches!(*b, b'\n' | b'\t') {
                *b = b' ';
            }
        }
    }
    out.push(b'\n');
}
