//! `pgscope` command-line tool.
//!
//! ```text
//! pgscope fingerprint [-z]     read statements from stdin, print `<16-hex id>\t<normalized>`
//! ```

use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

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

fn fingerprint(nul: bool) -> io::Result<()> {
    let mut input = Vec::new();
    io::stdin().lock().read_to_end(&mut input)?;
    let sep = if nul { b'\0' } else { b'\n' };
    let parts = split(&input, sep);
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    if parts.len() == 1 {
        out.write_all(&render(parts[0], sep))?;
    } else {
        // Big inputs: one part per core, rendered at once, written in input order.
        let rendered: Vec<Vec<u8>> = std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .iter()
                .map(|part| s.spawn(move || render(part, sep)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for part in rendered {
            out.write_all(&part)?;
        }
    }
    out.flush()
}

/// Below this, one thread: starting others costs more than it saves.
const PARALLEL_FROM: usize = 1 << 20;

/// `input` cut into one part per core at statement boundaries (one part for small inputs).
fn split(input: &[u8], sep: u8) -> Vec<&[u8]> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if input.len() < PARALLEL_FROM || cores == 1 {
        return vec![input];
    }
    let mut parts = Vec::with_capacity(cores);
    let mut rest = input;
    for i in (1..cores).rev() {
        let target = rest.len() / (i + 1);
        let Some(cut) = memchr::memchr(sep, &rest[target..]).map(|p| target + p + 1) else {
            break;
        };
        let (part, tail) = rest.split_at(cut);
        parts.push(part);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// One output line per statement of `part`: `<16-hex id>\t<normalized>\n`.
fn render(part: &[u8], sep: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(part.len());
    let mut text = String::new();
    for chunk in part.split(|&b| b == sep) {
        // Invalid UTF-8 is replaced, never rejected: every statement gets a line.
        let sql = String::from_utf8_lossy(chunk);
        let sql = sql.trim_end_matches('\r');
        if sql.trim().is_empty() {
            continue;
        }
        let id = pgscope::fingerprint_to(sql, &mut text);
        push_hex(&mut out, id);
        out.push(b'\t');
        let start = out.len();
        out.extend_from_slice(text.as_bytes());
        for b in &mut out[start..] {
            if matches!(*b, b'\n' | b'\t') {
                *b = b' ';
            }
        }
        out.push(b'\n');
    }
    out
}

fn push_hex(out: &mut Vec<u8>, id: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((id >> (shift * 4)) & 0xf) as usize]);
    }
}
