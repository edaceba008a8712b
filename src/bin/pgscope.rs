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
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for chunk in input.split(|&b| b == sep) {
        // Invalid UTF-8 is replaced, never rejected: every statement gets a line.
        let text = String::from_utf8_lossy(chunk);
        let text = text.trim_end_matches('\r');
        if text.trim().is_empty() {
            continue;
        }
        let fp = pgscope::fingerprint(text);
        writeln!(
            out,
            "{:016x}\t{}",
            fp.id(),
            fp.normalized().replace(['\n', '\t'], " ")
        )?;
    }
    out.flush()
}
