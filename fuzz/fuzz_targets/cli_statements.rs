//! Fuzz the statement path of `pgscope fingerprint -z`: arbitrary bytes cut at NUL bytes, each
//! piece read as lossy UTF-8 and fingerprinted into one reused buffer, as the CLI does. The
//! reused buffer must never leak one statement's text into the next: every piece's output must
//! equal a fresh `pgscope::fingerprint` of it, and the output line must stay one line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut text = String::new();
    for chunk in data.split(|&b| b == 0) {
        let sql = String::from_utf8_lossy(chunk);
        let sql = sql.trim_end_matches('\r');
        if sql.trim().is_empty() {
            continue;
        }
        let id = pgscope::fingerprint_to(sql, &mut text);
        let fresh = pgscope::fingerprint(sql);
        assert_eq!(id, fresh.id(), "id differs for {sql:?}");
        assert_eq!(text, fresh.normalized(), "text differs for {sql:?}");
        let line: String = text
            .chars()
            .map(|c| if matches!(c, '\n' | '\t') { ' ' } else { c })
            .collect();
        assert!(!line.contains('\n'));
    }
});
