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
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
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
