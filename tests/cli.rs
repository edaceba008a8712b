//! The `pgscope fingerprint` command, run as a real process.

use std::io::Write;
use std::process::{Command, Stdio};

fn run(args: &[&str], input: &[u8]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgscope"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pgscope");
    // The command streams: it writes output while it still reads input, so feed it from
    // another thread while this one reads what it prints.
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder").expect("write");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fingerprint_prints_id_and_normalized_text_per_line_in_input_order() {
    let input = b"SELECT * FROM users WHERE id = 42\nselect *  from USERS where ID = $1 -- same\nINSERT INTO t VALUES (1), (2)\nSELECT 'open\n";
    let (code, out, _) = run(&["fingerprint"], input);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let fp = pgscope::fingerprint("SELECT * FROM users WHERE id = 42");
    assert_eq!(
        lines[0],
        format!("{:016x}\tSELECT * FROM users WHERE id = $1", fp.id())
    );
    assert_eq!(lines[0], lines[1]);
    assert!(lines[2].ends_with("\tINSERT INTO t VALUES (...)"));
    assert!(
        lines[3].ends_with("\tSELECT $1"),
        "malformed input still gets a line without its literal"
    );
}

#[test]
fn nul_separated_input_allows_multi_line_statements_and_invalid_utf8() {
    let (code, out, _) = run(
        &["fingerprint", "-z"],
        b"SELECT a\n  FROM t\n WHERE b = 'x'\0SELECT \xff\xfe 1\0",
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].ends_with("\tSELECT a FROM t WHERE b = $1"),
        "{out}"
    );
}

#[test]
fn help_explains_usage_and_bad_flags_fail() {
    let (code, out, _) = run(&["fingerprint", "--help"], b"");
    assert_eq!(code, 0);
    assert!(out.contains("<16-hex fingerprint id>"));
    let (code, _, err) = run(&["fingerprint", "--bogus"], b"");
    assert_eq!(code, 2);
    assert!(err.contains("unknown option"));
}

#[test]
fn a_big_input_is_processed_in_parallel_with_the_same_output_in_input_order() {
    // Over the 1 MiB threshold: split across cores, written back in order.
    let mut input = String::new();
    let mut expected = String::new();
    let mut i = 0u64;
    while input.len() < 3 << 20 {
        let sql = match i % 4 {
            0 => format!("SELECT name, email FROM users WHERE id = {i} AND tenant = 'acme-{i}'"),
            1 => format!(
                "INSERT INTO events (kind, n) VALUES ('click', {i}), ('view', {})",
                i + 1
            ),
            2 => format!(
                "UPDATE posts SET score = score + {i}.5 WHERE author_id IN ({i}, {})",
                i + 2
            ),
            _ => format!("select \"user\".id from \"user\" where \"user\".id = {i} -- c{i}"),
        };
        let fp = pgscope::fingerprint(&sql);
        expected.push_str(&format!("{:016x}\t{}\n", fp.id(), fp.normalized()));
        input.push_str(&sql);
        input.push('\n');
        i += 1;
    }
    let (code, out, _) = run(&["fingerprint"], input.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(out.lines().count() as u64, i);
    assert!(
        out == expected,
        "output differs from the library's, line by line"
    );
}

#[test]
fn a_statement_longer_than_a_read_block_and_nul_separated_blocks_match_the_library() {
    // The command reads in blocks of a few hundred KiB: a 1.5 MiB statement spans several,
    // and NUL-separated multi-line statements cross block boundaries.
    let mut long = String::from("SELECT * FROM t WHERE id IN (");
    let mut i = 0;
    while long.len() < 3 << 19 {
        long.push_str(&format!("{i}, "));
        i += 1;
    }
    long.push_str("0)");
    let mut input = Vec::new();
    let mut expected = String::new();
    for n in 0..40_000 {
        let sql = match n {
            7 | 20_000 => long.clone(),
            _ => format!("SELECT a,\n  b FROM t{}\n WHERE c = '{n}'", n % 3),
        };
        let fp = pgscope::fingerprint(&sql);
        expected.push_str(&format!("{:016x}\t{}\n", fp.id(), fp.normalized()));
        input.extend_from_slice(sql.as_bytes());
        input.push(0);
    }
    let (code, out, _) = run(&["fingerprint", "-z"], &input);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 40_000);
    assert!(out == expected, "output differs from the library's");
}

#[test]
fn a_regular_file_on_stdin_is_read_from_its_position_with_the_same_output_as_a_pipe() {
    // A regular file is mapped rather than read: start past its first line (as after a shell's
    // `read`), with a statement longer than a block and no final newline, and compare with the
    // same bytes piped. The file's position ends at its end, as reading it would leave it.
    let mut text = String::from("SELECT skipped_by_the_caller FROM t\n");
    let skip = text.len() as u64;
    let mut i = 0u64;
    while text.len() < 2 << 20 {
        if i == 900 {
            text.push_str("SELECT * FROM t WHERE id IN (");
            for n in 0..60_000 {
                text.push_str(&format!("{n}, "));
            }
            text.push_str("0)\n");
        }
        text.push_str(&format!(
            "select id from t{} where v = {i} and s = 'x{i}'\n",
            i % 5
        ));
        i += 1;
    }
    text.push_str("DELETE FROM t WHERE id = 7");
    let path = std::env::temp_dir().join(format!("pgscope-cli-{}.sql", std::process::id()));
    std::fs::write(&path, &text).expect("write the input");
    let mut file = std::fs::File::open(&path).expect("open the input");
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(skip)).expect("seek");
    let out = Command::new(env!("CARGO_BIN_EXE_pgscope"))
        .arg("fingerprint")
        .stdin(file.try_clone().expect("clone the file"))
        .output()
        .expect("run pgscope");
    let position = std::io::Seek::stream_position(&mut file).expect("position");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    let (code, piped, _) = run(&["fingerprint"], &text.as_bytes()[skip as usize..]);
    assert_eq!(code, 0);
    let mapped = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        mapped.lines().count() as u64,
        i + 2,
        "one line per statement"
    );
    assert!(
        mapped == piped,
        "a mapped file and a pipe give different output"
    );
    assert!(
        mapped.ends_with("\tDELETE FROM t WHERE id = $1\n"),
        "the last line, unterminated"
    );
    assert!(
        !mapped.contains("skipped"),
        "bytes before the position are not read"
    );
    assert_eq!(position, text.len() as u64, "stdin is left at its end");
}

#[test]
fn a_quoted_identifier_with_a_newline_or_a_tab_stays_on_its_own_line() {
    // Only quoted identifiers carry input bytes into the output as they are; the line format
    // has no room for a newline or a tab, in a small input or in a block of a big one.
    let odd = "SELECT \"a\tb\" FROM \"x\ny\" WHERE id = 1";
    let mut input = Vec::new();
    for n in 0..30_000 {
        let sql = match n {
            0 | 20_000 => odd.to_owned(),
            _ => format!("SELECT b FROM t WHERE c = {n}"),
        };
        input.extend_from_slice(sql.as_bytes());
        input.push(0);
    }
    for input in [&input[..odd.len() + 1], &input[..]] {
        let (code, out, _) = run(&["fingerprint", "-z"], input);
        assert_eq!(code, 0);
        let expected = input.split(|&b| b == 0).filter(|s| !s.is_empty()).count();
        assert_eq!(out.lines().count(), expected, "one line per statement");
        let first = out.lines().next().expect("a line");
        assert!(
            first.ends_with("\tSELECT \"a b\" FROM \"x y\" WHERE id = $1"),
            "{first}"
        );
        assert_eq!(first.matches('\t').count(), 1, "{first}");
    }
}
