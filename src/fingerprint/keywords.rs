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
struct KeywordTable {
    slots: [u8; 1024],
}

const EMPTY: u8 = u8::MAX;

/// Constant-time, case-insensitive hash of a non-empty word: its length and first, middle and
/// last bytes are enough to spread the keyword list over the table (average probe length 1.09).
fn kw_hash(word: &[u8]) -> usize {
    let n = word.len();
    let up = |i: usize| word[i].to_ascii_uppercase();
    let h = (n as u32).wrapping_mul(0x9E37_79B1)
        ^ u32::from(up(0)).wrapping_mul(0x85EB_CA77)
        ^ u32::from(up(n - 1)).wrapping_mul(0xC2B2_AE3D)
        ^ u32::from(up(n / 2)).wrapping_mul(0x27D4_EB2F);
    (h.wrapping_mul(0x9E37_79B1) >> 22) as usize
}

fn keyword_table() -> &'static KeywordTable {
    static TABLE: std::sync::OnceLock<KeywordTable> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut slots = [EMPTY; 1024];
        for (i, k) in KEYWORDS.iter().enumerate() {
            let mut h = kw_hash(k.as_bytes()) % slots.len();
            while slots[h] != EMPTY {
                h = (h + 1) % slots.len();
            }
            slots[h] = i as u8;
        }
        KeywordTable { slots }
    })
}

pub(crate) fn keyword(word: &[u8]) -> Option<&'static str> {
    const LONGEST: usize = 17; // CURRENT_TIMESTAMP
    if word.len() < 2 || word.len() > LONGEST {
        return None;
    }
    let table = keyword_table();
    let mut h = kw_hash(word) % table.slots.len();
    loop {
        let slot = table.slots[h];
        if slot == EMPTY {
            return None;
        }
        let k = KEYWORDS[usize::from(slot)];
        if k.len() == word.len()
            && k.bytes()
                .zip(word)
                .all(|(k, w)| k == w.to_ascii_uppercase())
        {
            return Some(k);
        }
        h = (h + 1) % table.slots.len();
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
