//! `pgscope` command-line tool.
//!
//! ```text
//! pgscope fingerprint [-z]     read statements from stdin, print `<16-hex id>\t<normalized>`
//! ```

use std::io::{self, Read, Seek, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
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
/// Small enough that a few megabytes already keep every core busy, and that the buffers of
/// the blocks in flight (the pages the process has to fault in) stay few; big enough that
/// handing a block to a thread costs nothing next to rendering it.
const BLOCK: usize = 128 << 10;

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

/// Reads stdin in blocks, renders them on every core, writes the output in input order.
///
/// A regular file on stdin is mapped instead and handed to [`mapped`]; anything else is
/// streamed by [`streamed`]. An input that fits in one block is rendered on the main thread:
/// a single statement piped in starts no thread.
fn fingerprint(nul: bool) -> io::Result<()> {
    let sep = if nul { b'\0' } else { b'\n' };
    let mut input = stdin_file()?;
    if let Some(map) = map_regular_file(&mut input) {
        return mapped(&map, sep, &mut io::stdout().lock());
    }
    widen_pipe(&input);
    // Each block's output is one large write of whole lines: stdout's own line buffer passes
    // it straight through, so no second buffer (and no copy into it) is needed.
    let mut out = io::stdout().lock();
    let mut blocks = Blocks {
        input,
        sep,
        carry: Vec::new(),
        ended: false,
    };
    let mut first = Buffers::new();
    let Some(len) = blocks.next(&mut first.input)? else {
        return Ok(());
    };
    if blocks.ended {
        render(&first.input[..len], sep, &mut first.output);
        out.write_all(&first.output)?;
        return out.flush();
    }
    streamed(blocks, (len, first), sep, &mut out)
}

/// Standard input as a file of its own (the same open file, pipe or terminal), read without
/// the standard library's lock and buffer: mapped when it is a regular file, else read by the
/// workers in turn.
fn stdin_file() -> io::Result<std::fs::File> {
    use std::os::fd::AsFd;
    Ok(std::fs::File::from(
        io::stdin().as_fd().try_clone_to_owned()?,
    ))
}

/// Widens a pipe to 1 MiB, so that the program writing into it runs ahead by more than 64 KiB
/// and both sides wake each other a sixteenth as often. Anything else is left as it is.
fn widen_pipe(input: &std::fs::File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `fcntl` on an open descriptor this process owns; on anything but a pipe it
        // fails with EBADF or EINVAL and changes nothing, and a failure only keeps the default.
        unsafe {
            libc::fcntl(input.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = input;
}

/// What the workers of [`streamed`] share: the input, and the sequence number of its next
/// block.
struct Source<R> {
    blocks: Blocks<R>,
    /// The block the main thread read to find out that the input is bigger than one.
    first: Option<(usize, Buffers)>,
    seq: u64,
    /// The read error that ended the input early, reported once every block before it is out.
    error: Option<io::Error>,
}

/// Renders a streamed input on every core: each worker takes a free buffer, then takes its
/// turn at the input to read the next block into it (so reading one block overlaps rendering
/// the others, and no thread only hands blocks on), renders it, and passes it to this thread,
/// which writes the finished blocks in input order and hands their buffers back. Memory is
/// bounded by the buffers (two per worker), not by the input's size.
///
/// The workers are not joined: when stdout fails (a reader that went away), this returns at
/// once, even with a worker still waiting on a slow input such as `tail -f`.
fn streamed(
    blocks: Blocks<std::fs::File>,
    first: (usize, Buffers),
    sep: u8,
    out: &mut impl Write,
) -> io::Result<()> {
    use std::sync::Arc;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let source = Arc::new(Mutex::new(Source {
        blocks,
        first: Some(first),
        seq: 0,
        error: None,
    }));
    let (free_tx, free_rx) = mpsc::channel::<Buffers>();
    for _ in 1..2 * workers {
        let _ = free_tx.send(Buffers::new());
    }
    let free_rx = Arc::new(Mutex::new(free_rx));
    let (done_tx, done_rx) = mpsc::channel::<(u64, Buffers)>();
    for _ in 0..workers {
        let (done_tx, free_rx, source) = (done_tx.clone(), free_rx.clone(), source.clone());
        std::thread::spawn(move || {
            // A buffer first, then a block: the earliest block not yet written always has a
            // buffer, so the writer can never wait on a worker that waits on it.
            let mut spare = None;
            while let Some(mut bufs) = spare.take().or_else(|| take(&free_rx)) {
                let Some((seq, len)) = next_block(&source, &mut bufs, &mut spare) else {
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
    // Ends when every worker has stopped: at the end of input, or after a panic.
    let written = write_in_order(&done_rx, out, &free_tx)?;
    let mut source = source
        .lock()
        .map_err(|_| io::Error::other("a worker thread panicked"))?;
    if written != source.seq {
        return Err(io::Error::other("a worker thread panicked"));
    }
    out.flush()?;
    source.error.take().map_or(Ok(()), Err)
}

/// The next block of a [`Source`], read into `bufs` (the first block is swapped in, and the
/// buffer it replaces kept in `spare`), and its sequence number; `None` at the end of input,
/// after a read error, or when another worker panicked while reading.
fn next_block<R: Read>(
    source: &Mutex<Source<R>>,
    bufs: &mut Buffers,
    spare: &mut Option<Buffers>,
) -> Option<(u64, usize)> {
    let mut source = source.lock().ok()?;
    let len = if let Some((len, first)) = source.first.take() {
        *spare = Some(std::mem::replace(bufs, first));
        len
    } else if source.error.is_some() {
        return None;
    } else {
        match source.blocks.next(&mut bufs.input) {
            Ok(Some(len)) => len,
            Ok(None) => return None,
            Err(e) => {
                source.error = Some(e);
                return None;
            }
        }
    };
    let seq = source.seq;
    source.seq += 1;
    Some((seq, len))
}

/// Standard input (`file`) mapped into memory from its current position on, when it is a
/// regular file of more than one block: the workers then read the page cache directly, with
/// no copy into buffers and no reading thread. Anything else (a pipe, a terminal, a small or
/// unmappable file) is streamed. The file's position is moved to its end, as reading it would.
fn map_regular_file(file: &mut std::fs::File) -> Option<memmap2::Mmap> {
    let meta = file.metadata().ok()?;
    let at = file.stream_position().ok()?;
    if !meta.is_file() || meta.len().saturating_sub(at) <= BLOCK as u64 {
        return None;
    }
    // SAFETY: the map is only read, and only while this process runs. A file truncated by
    // another process while it is being read would end the process with SIGBUS (as for any
    // tool that maps its input, e.g. ripgrep); a file changed in place gives output for a mix
    // of old and new bytes, as reading it while it changes would.
    // Not pre-faulted: the workers fault their own blocks in, in parallel.
    let map = unsafe { memmap2::MmapOptions::new().offset(at).map(&*file) }.ok()?;
    file.seek(io::SeekFrom::End(0)).ok()?;
    Some(map)
}

/// Renders a mapped input: cut into blocks at separators, rendered on every core, written in
/// input order. Memory beyond the map is two output buffers per worker.
fn mapped(input: &[u8], sep: u8, out: &mut impl Write) -> io::Result<()> {
    let mut cuts = vec![0];
    let mut at = 0;
    while at < input.len() {
        let want = at + BLOCK;
        at = match input.get(want..) {
            Some(rest) => memchr::memchr(sep, rest).map_or(input.len(), |p| want + p + 1),
            None => input.len(),
        };
        cuts.push(at);
    }
    let blocks = cuts.len() - 1;
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(blocks);
    let next = AtomicUsize::new(0);
    let (free_tx, free_rx) = mpsc::channel::<Buffers>();
    for _ in 0..2 * workers {
        let _ = free_tx.send(Buffers::new());
    }
    let free_rx = Mutex::new(free_rx);
    let (done_tx, done_rx) = mpsc::channel::<(u64, Buffers)>();
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (done_tx, free_rx, next, cuts) = (done_tx.clone(), &free_rx, &next, &cuts);
            s.spawn(move || {
                // A buffer first, then a block: the earliest block not yet written always has
                // a buffer, so the writer can never wait on a worker that waits on it.
                while let Some(mut bufs) = take(free_rx) {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= blocks {
                        return;
                    }
                    render(&input[cuts[k]..cuts[k + 1]], sep, &mut bufs.output);
                    if done_tx.send((k as u64, bufs)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let result = write_in_order(&done_rx, out, &free_tx);
        // Stops the workers (a write error, or the end): no buffer comes back any more.
        drop(free_tx);
        if result? != blocks as u64 {
            return Err(io::Error::other("a worker thread panicked"));
        }
        out.flush()
    })
}

/// The next item from a receiver shared by the workers; `None` once its sender is gone (or a
/// worker panicked holding the lock). The lock is held while waiting, so one worker waits at
/// the channel and the others at the lock.
fn take<T>(rx: &Mutex<mpsc::Receiver<T>>) -> Option<T> {
    rx.lock().ok()?.recv().ok()
}

/// Writes the rendered blocks arriving on `done` in input order, each as soon as the one
/// before it is out, and hands their buffers back on `free`. Returns how many were written
/// once every worker has stopped (their senders gone).
fn write_in_order(
    done: &mpsc::Receiver<(u64, Buffers)>,
    out: &mut impl Write,
    free: &mpsc::Sender<Buffers>,
) -> io::Result<u64> {
    let mut next = 0;
    let mut waiting = std::collections::BTreeMap::new();
    for (seq, bufs) in done {
        waiting.insert(seq, bufs);
        while let Some(bufs) = waiting.remove(&next) {
            out.write_all(&bufs.output)?;
            let _ = free.send(bufs);
            next += 1;
        }
    }
    Ok(next)
}

/// Cuts stdin into blocks of whole statements.
struct Blocks<R> {
    input: R,
    sep: u8,
    /// What followed the last separator of the last block: the start of the next.
    carry: Vec<u8>,
    /// The input has ended (so a terminal is not asked for a second end-of-file).
    ended: bool,
}

impl<R: Read> Blocks<R> {
    /// Fills `buf` with the statements left over from the last block and the next block of
    /// input, up to its last separator; what follows that separator is kept for the next
    /// block. A statement longer than a block grows the buffer until it ends. Returns the
    /// length of the block, or `None` at the end of input.
    fn next(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let carry = &mut self.carry;
        if self.ended {
            return Ok(None);
        }
        if buf.len() < BLOCK + carry.len() {
            buf.resize(BLOCK + carry.len(), 0);
        }
        buf[..carry.len()].copy_from_slice(carry);
        let mut filled = carry.len();
        carry.clear();
        let mut scanned = 0;
        loop {
            while filled < buf.len() {
                match self.input.read(&mut buf[filled..]) {
                    Ok(0) => {
                        self.ended = true;
                        return Ok((filled > 0).then_some(filled));
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(last) = memchr::memrchr(self.sep, &buf[scanned..filled]) {
                let end = scanned + last + 1;
                carry.extend_from_slice(&buf[end..filled]);
                return Ok(Some(end));
            }
            scanned = filled;
            let grown = buf.len() * 2;
            buf.resize(grown, 0);
        }
    }
}

/// Renders one output line per statement of `part` into `out` (cleared first):
/// `<16-hex id>\t<normalized>\n`.
fn render(part: &[u8], sep: u8, out: &mut Vec<u8>) {
    out.clear();
    // Only a quoted identifier carries input bytes into the output as they are: a block
    // without a `"` has no line whose text needs checking for a newline or a tab.
    let quoted = memchr::memchr(b'"', part).is_some();
    let line = |sql: &str, out: &mut Vec<u8>| line(sql, quoted, out);
    match std::str::from_utf8(part) {
        Ok(part) => {
            let mut from = 0;
            for at in memchr::memchr_iter(sep, part.as_bytes()).chain([part.len()]) {
                // Cut at an ASCII byte (or the end): always a character boundary.
                if let Some(sql) = part.get(from..at) {
                    line(sql, out);
                }
                from = at + 1;
            }
        }
        Err(_) => {
            for chunk in part.split(|&b| b == sep) {
                // Invalid UTF-8 is replaced, never rejected: every statement gets a line.
                line(&String::from_utf8_lossy(chunk), out);
            }
        }
    }
}

/// `v` as eight lower-case hex digits, computed on all eight at once: each nibble spread to a
/// byte of its own, then `0`–`9` or `a`–`f` added by whether it is above 9.
fn hex8(v: u32) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let mut x = u64::from(v);
    x = (x | x << 16) & 0x0000_FFFF_0000_FFFF;
    x = (x | x << 8) & 0x00FF_00FF_00FF_00FF;
    x = (x | x << 4) & 0x0F0F_0F0F_0F0F_0F0F;
    // Bytes now hold the nibbles, the least significant in the lowest byte.
    let letters = ((x + ONES * 6) >> 4) & ONES;
    let ascii = x + ONES * u64::from(b'0') + letters * u64::from(b'a' - b'0' - 10);
    ascii.to_be_bytes()
}

/// Appends `<16-hex id>\t<normalized>\n` for one statement (nothing for a blank one): the
/// normalized text is rendered in place after room left for the id. `quoted`: the statement
/// may hold a quoted identifier.
fn line(sql: &str, quoted: bool, out: &mut Vec<u8>) {
    let sql = sql.trim_end_matches('\r');
    if sql.trim_start().is_empty() {
        return;
    }
    let head = out.len();
    out.extend_from_slice(&[b'\t'; 17]);
    let start = out.len();
    let id = pgscope::fingerprint_append(sql, out);
    out[head..head + 8].copy_from_slice(&hex8((id >> 32) as u32));
    out[head + 8..head + 16].copy_from_slice(&hex8(id as u32));
    // A quoted identifier may hold a newline or a tab; the line format cannot.
    if quoted && memchr::memchr2(b'\n', b'\t', &out[start..]).is_some() {
        for b in &mut out[start..] {
            if matches!(*b, b'\n' | b'\t') {
                *b = b' ';
            }
        }
    }
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_digits_are_those_of_format() {
        let mut v = 0x0123_4567_89ab_cdefu64;
        for _ in 0..1000 {
            let mut hex = super::hex8((v >> 32) as u32).to_vec();
            hex.extend(super::hex8(v as u32));
            assert_eq!(String::from_utf8(hex).unwrap(), format!("{v:016x}"));
            v = v.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        }
    }
}
