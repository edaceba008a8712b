//! Fuzz the statement path of `pgscope fingerprint -z`: arbitrary bytes cut at NUL bytes, each
//! piece read as lossy UTF-8 and its normalized text appended to one output buffer after the
//! ones before it, as the CLI does. Appending must never mix one statement's text into the
//! next: every piece's bytes must equal a fresh `pgscope::fingerprint` of it, be UTF-8, and
//! the output line must stay one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    for chunk in data.split(|&b| b == 0) {
        let sql = String::from_utf8_lossy(chunk);
        let sql = sql.trim_end_matches('\r');
        if sql.trim().is_empty() {
            continue;
        }
        out.extend_from_slice(b"0123456789abcdef\t");
        let start = out.len();
        let id = pgscope::fingerprint_append(sql, &mut out);
        let fresh = pgscope::fingerprint(sql);
        assert_eq!(id, fresh.id(), "id differs for {sql:?}");
        let text = std::str::from_utf8(&out[start..]).expect("appended text is UTF-8");
        assert_eq!(text, fresh.normalized(), "text differs for {sql:?}");
        let line: String = text
            .chars()
            .map(|c| if matches!(c, '\n' | '\t') { ' ' } else { c })
            .collect();
        assert!(!line.contains('\n'));
        out.push(b'\n');
    }
});
