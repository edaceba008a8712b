//! The SQL keyword table, shared by the lexer (which tags words once) and the normalizer.

/// SQL keywords rendered in upper case. Everything else unquoted is an identifier and is
/// rendered in lower case (PostgreSQL folds unquoted identifiers to lower case, so this changes
/// nothing about which object is meant). Kept sorted so duplicates are easy to spot.
pub(super) const KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BOTH",
    "BY",
    "CALL",
    "CASCADE",
    "CASE",
    "CAST",
    "CHECK",
    "COALESCE",
    "COLLATE",
    "COLUMN",
    "COMMIT",
    "CONFLICT",
    "CONSTRAINT",
    "COPY",
    "CREATE",
    "CROSS",
    "CURRENT_DATE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DATE",
    "DEALLOCATE",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "ELSE",
    "END",
    "EXCEPT",
    "EXECUTE",
    "EXISTS",
    "EXPLAIN",
    "EXTRACT",
    "FALSE",
    "FETCH",
    "FILTER",
    "FIRST",
    "FOR",
    "FOREIGN",
    "FROM",
    "FULL",
    "GRANT",
    "GREATEST",
    "GROUP",
    "HAVING",
    "IF",
    "ILIKE",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTERVAL",
    "INTO",
    "IS",
    "ISNULL",
    "JOIN",
    "KEY",
    "LAST",
    "LATERAL",
    "LEADING",
    "LEAST",
    "LEFT",
    "LIKE",
    "LIMIT",
    "LOCK",
    "LOCKED",
    "MERGE",
    "NATURAL",
    "NEXT",
    "NOT",
    "NOTHING",
    "NOTNULL",
    "NOWAIT",
    "NULL",
    "NULLIF",
    "NULLS",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "OUTER",
    "OVER",
    "PARTITION",
    "PREPARE",
    "PRIMARY",
    "REFERENCES",
    "RELEASE",
    "RETURNING",
    "REVOKE",
    "RIGHT",
    "ROLLBACK",
    "ROW",
    "ROWS",
    "SAVEPOINT",
    "SELECT",
    "SET",
    "SHARE",
    "SHOW",
    "SIMILAR",
    "SKIP",
    "SOME",
    "START",
    "TABLE",
    "THEN",
    "TIME",
    "TIMESTAMP",
    "TO",
    "TRAILING",
    "TRANSACTION",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UNIQUE",
    "UPDATE",
    "USING",
    "VACUUM",
    "VALUES",
    "VIEW",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "WITHIN",
];

/// Open-addressing table of the keywords, keyed by a cheap hash of the upper-cased bytes: one
/// probe and one comparison for most words (this runs once per word of every new statement).
/// Built at compile time.
static SLOTS: [u8; 1024] = build_slots();

const EMPTY: u8 = u8::MAX;

/// Upper-cases an ASCII letter by clearing bit 5. Keywords hold only letters and `_`, and on a
/// word's bytes (letters, digits, `_`, `$`, bytes ≥ 0x80) this maps a byte to a keyword's letter
/// or `_` only when the byte is that letter in either case, or `_` itself: comparing masked
/// bytes is a case-insensitive comparison for this purpose, without a branch per byte.
const fn fold(b: u8) -> u8 {
    b & 0xDF
}

/// Constant-time, case-insensitive hash of a non-empty word: its length and first, middle and
/// last bytes are enough to spread the keyword list over the table (average probe length 1.09).
const fn kw_hash(word: &[u8]) -> usize {
    let n = word.len();
    let h = (n as u32).wrapping_mul(0x9E37_79B1)
        ^ (fold(word[0]) as u32).wrapping_mul(0x85EB_CA77)
        ^ (fold(word[n - 1]) as u32).wrapping_mul(0xC2B2_AE3D)
        ^ (fold(word[n / 2]) as u32).wrapping_mul(0x27D4_EB2F);
    (h.wrapping_mul(0x9E37_79B1) >> 22) as usize
}

const fn build_slots() -> [u8; 1024] {
    let mut slots = [EMPTY; 1024];
    let mut i = 0;
    while i < KEYWORDS.len() {
        let mut h = kw_hash(KEYWORDS[i].as_bytes()) % slots.len();
        while slots[h] != EMPTY {
            h = (h + 1) % slots.len();
        }
        slots[h] = i as u8;
        i += 1;
    }
    slots
}

pub(crate) fn keyword(word: &[u8]) -> Option<&'static str> {
    keyword_index(word).map(name)
}

/// The keyword at `index` of [`KEYWORDS`] (an index [`keyword_index`] returned).
#[inline]
pub(crate) fn name(index: u8) -> &'static str {
    KEYWORDS[usize::from(index)]
}

/// [`keyword`] as an index into [`KEYWORDS`]: one byte in a token instead of a fat pointer.
#[inline]
pub(crate) fn keyword_index(word: &[u8]) -> Option<u8> {
    const LONGEST: usize = 17; // CURRENT_TIMESTAMP
    if word.len() < 2 || word.len() > LONGEST {
        return None;
    }
    let mut h = kw_hash(word) % SLOTS.len();
    loop {
        let slot = SLOTS[h];
        if slot == EMPTY {
            return None;
        }
        let k = KEYWORDS[usize::from(slot)];
        if k.len() == word.len() && k.bytes().zip(word).all(|(k, &w)| k == fold(w)) {
            return Some(slot);
        }
        h = (h + 1) % SLOTS.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_table_finds_every_keyword_and_nothing_else() {
        assert!(
            KEYWORDS.windows(2).all(|w| w[0] < w[1]),
            "sorted, hence no duplicates"
        );
        assert!(KEYWORDS.len() < usize::from(EMPTY));
        for k in KEYWORDS {
            assert_eq!(keyword(k.to_lowercase().as_bytes()), Some(*k));
        }
        for w in [
            "users",
            "id",
            "selects",
            "x",
            "current_timestampz",
            "naming",
        ] {
            assert_eq!(keyword(w.as_bytes()), None, "{w}");
        }
    }
}
