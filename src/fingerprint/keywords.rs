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

/// Perfect-hash table of the keywords: every keyword has a slot of its own, so a lookup is one
/// hash, one load and one comparison of head, tail and length, with no probe loop and no branch
/// on whether the slot was empty (an empty slot holds [`NONE`], whose entry matches no word)
/// nor on whether the word matched. This runs once per word
/// of every statement fingerprinted, and identifiers and keywords alternate unpredictably.
/// Built at compile time, including the search for a multiplier that spreads the keywords
/// without collision.
static TABLE: Table = Table::build();

/// The slot value of "no keyword": one past the last keyword's index.
const NONE: u8 = KEYWORDS.len() as u8;

/// log2 of the table's size: 2 KiB keeps the search for a collision-free multiplier short.
const SLOT_BITS: u32 = 11;

struct Table {
    multiplier: u64,
    slots: [u8; 1 << SLOT_BITS],
    /// Every keyword's [`head`] by index, then one entry for [`NONE`] that no head equals
    /// ([`fold`] clears bit 5 of every byte of a head).
    heads: [u64; COUNT + 1],
    /// Every keyword's [`tail`] by index, then 0 for [`NONE`].
    tails: [u64; COUNT + 1],
    /// Every keyword's length by index, then 0 for [`NONE`].
    lens: [u8; COUNT + 1],
}

impl Table {
    const fn build() -> Table {
        let mut heads = [u64::MAX; COUNT + 1];
        let mut tails = [0; COUNT + 1];
        let mut lens = [0; COUNT + 1];
        let mut i = 0;
        while i < COUNT {
            heads[i] = head(KEYWORDS[i].as_bytes());
            tails[i] = tail(KEYWORDS[i].as_bytes());
            lens[i] = KEYWORDS[i].len() as u8;
            i += 1;
        }
        let mut multiplier: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut tries = 0;
        'search: loop {
            assert!(tries < 10_000, "no collision-free keyword hash multiplier");
            tries += 1;
            let mut slots = [NONE; 1 << SLOT_BITS];
            let mut i = 0;
            while i < COUNT {
                let h = slot(key(KEYWORDS[i].len(), heads[i], tails[i]), multiplier);
                if slots[h] != NONE {
                    multiplier = multiplier.wrapping_add(2);
                    continue 'search;
                }
                slots[h] = i as u8;
                i += 1;
            }
            return Table {
                multiplier,
                slots,
                heads,
                tails,
                lens,
            };
        }
    }
}

/// Upper-cases an ASCII letter by clearing bit 5. Keywords hold only letters and `_`, and on a
/// word's bytes (letters, digits, `_`, `$`, bytes ≥ 0x80) this maps a byte to a keyword's letter
/// or `_` only when the byte is that letter in either case, or `_` itself: comparing masked
/// bytes is a case-insensitive comparison for this purpose, without a branch per byte.
pub(super) const fn fold(b: u8) -> u8 {
    b & 0xDF
}

/// [`fold`] on eight bytes at once.
pub(crate) const fn fold8(x: u64) -> u64 {
    x & 0xDFDF_DFDF_DFDF_DFDF
}

/// A word's first eight bytes (all of a shorter word, zero-padded), folded, as one little-endian
/// `u64`: what the table is hashed on, and for a keyword of up to eight letters (nearly all of
/// them) the whole comparison. The lexer computes it from the bytes it has already loaded.
pub(crate) const fn head(word: &[u8]) -> u64 {
    let mut h = 0u64;
    let mut i = 0;
    while i < word.len() && i < 8 {
        h |= (fold(word[i]) as u64) << (8 * i);
        i += 1;
    }
    h
}

/// A word's last eight bytes folded, as one little-endian `u64`, when it is longer than eight
/// bytes; 0 otherwise. With the [`head`] and the length this is the whole word up to 16 bytes
/// (`CURRENT_DATE`, `CURRENT_TIME` and `CURRENT_USER` share head and length, not tail).
pub(crate) const fn tail(word: &[u8]) -> u64 {
    let n = word.len();
    if n <= 8 {
        return 0;
    }
    let mut t = 0u64;
    let mut i = 0;
    while i < 8 {
        t |= (fold(word[n - 8 + i]) as u64) << (8 * i);
        i += 1;
    }
    t
}

/// What a word is hashed on: its head, its tail and its length.
const fn key(len: usize, head: u64, tail: u64) -> u64 {
    head ^ ((len as u64) << 59) ^ tail.rotate_left(27)
}

const fn slot(key: u64, multiplier: u64) -> usize {
    (key.wrapping_mul(multiplier) >> (64 - SLOT_BITS)) as usize
}

/// Number of keywords: the size of a per-keyword table such as [`set`] builds.
pub(crate) const COUNT: usize = KEYWORDS.len();

/// The index of `word` in [`KEYWORDS`], at compile time: naming a word that is not a keyword
/// is a build error, not a rule that silently never matches.
pub(crate) const fn index_of(word: &str) -> u8 {
    let w = word.as_bytes();
    let mut i = 0;
    while i < KEYWORDS.len() {
        let k = KEYWORDS[i].as_bytes();
        if k.len() == w.len() {
            let mut j = 0;
            while j < k.len() && k[j] == w[j] {
                j += 1;
            }
            if j == k.len() {
                return i as u8;
            }
        }
        i += 1;
    }
    panic!("not in KEYWORDS")
}

/// A per-keyword membership table for `words`, built at compile time: a rule over keywords
/// becomes one indexed load instead of string comparisons.
pub(crate) const fn set(words: &[&str]) -> [bool; COUNT] {
    let mut t = [false; COUNT];
    let mut i = 0;
    while i < words.len() {
        t[index_of(words[i]) as usize] = true;
        i += 1;
    }
    t
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
pub(crate) fn keyword_index(word: &[u8]) -> Option<u8> {
    keyword_index_with(word, head(word), tail(word))
}

/// [`keyword_index`] for a caller that already has the word's [`head`] and [`tail`] (the
/// lexer, from the bytes it loaded to find the word's end). Every test is evaluated, none
/// short-circuits: whether a word is a keyword is as unpredictable as it gets, and a select is
/// cheaper than a mispredicted branch.
#[inline(always)]
pub(crate) fn keyword_index_with(word: &[u8], head: u64, tail: u64) -> Option<u8> {
    let t = &TABLE;
    let index = t.slots[slot(key(word.len(), head, tail), t.multiplier)];
    let k = usize::from(index);
    let hit = (t.heads[k] == head)
        & (t.tails[k] == tail)
        & (usize::from(t.lens[k]) == word.len())
        // Head and tail cover 16 bytes; the few longer keywords compare their middle too.
        & (word.len() <= 16 || middle_eq(k, word));
    if hit { Some(index) } else { None }
}

/// Whether the word is the keyword at `k` (maybe [`NONE`]) up to [`fold`]ing, byte by byte:
/// for the words longer than 16 bytes.
#[cold]
fn middle_eq(k: usize, word: &[u8]) -> bool {
    KEYWORDS.get(k).is_some_and(|keyword| {
        let keyword = keyword.as_bytes();
        keyword.len() == word.len() && keyword.iter().zip(word).all(|(&k, &w)| k == fold(w))
    })
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
        assert!(KEYWORDS.len() < usize::from(u8::MAX));
        for k in KEYWORDS {
            assert_eq!(keyword(k.to_lowercase().as_bytes()), Some(*k));
        }
        // Against a plain case-insensitive search, on every keyword's near misses: one byte
        // changed, added or removed, and mixed case.
        let naive = |w: &[u8]| {
            KEYWORDS
                .iter()
                .position(|k| k.as_bytes().eq_ignore_ascii_case(w))
                .map(|i| i as u8)
        };
        for k in KEYWORDS {
            let k = k.as_bytes();
            let mut words = vec![
                k[..k.len() - 1].to_vec(),
                [k, b"s"].concat(),
                [k, b"_1"].concat(),
            ];
            for at in 0..k.len() {
                for b in [b'a', b'E', b'_', b'1', b'$', 0xC3] {
                    let mut w = k.to_vec();
                    w[at] = b;
                    words.push(w);
                }
                let mut mixed = k.to_ascii_lowercase();
                mixed[at] = mixed[at].to_ascii_uppercase();
                words.push(mixed);
            }
            for w in words {
                assert_eq!(
                    keyword_index(&w),
                    naive(&w),
                    "{:?}",
                    String::from_utf8_lossy(&w)
                );
            }
        }
        for w in [
            "users",
            "current_timestamq",
            "selectxx",
            "sel",
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
