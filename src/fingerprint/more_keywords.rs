//! PostgreSQL's keywords beyond the ones the normalizer always upper-cases ([`KEYWORDS`]):
//! read as identifiers by the lexer (so every rule about names, tables and summaries sees what
//! it saw before), and rendered as keywords by the normalizer where they act as one.
//!
//! PostgreSQL lets most of its keywords name columns and tables (`name`, `type`, `value`,
//! `data` are all keywords), so case alone cannot follow the category: a reserved word (or
//! one reserved but for function and type names) is always a keyword; an unreserved or
//! column-name keyword is one unless it stands where a name does: after `.`, `,`, `(`, `::`,
//! an operator, a value, or a keyword that introduces names (`SELECT`, `FROM`, `WHERE`, `SET`,
//! `BY`, `AS`, …), before `.` or `(`, or right after a name (an alias). So
//! `LOCK TABLE t IN ACCESS EXCLUSIVE MODE` keeps its keywords, and `SELECT name, type FROM t`
//! its columns.
//!
//! [`KEYWORDS`]: super::keywords::KEYWORDS

use super::keywords::{fold, head, set, tail};
use super::lexer::Tok;

/// A keyword's category, as `pg_get_keywords()` gives it (`catcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Category {
    /// `R`: reserved: never a name unquoted.
    Reserved,
    /// `T`: reserved, but can be a function or type name.
    TypeFunc,
    /// `C`: unreserved, but cannot be a function or type name.
    ColName,
    /// `U`: unreserved: can be any name.
    Unreserved,
}

/// PostgreSQL 15's other keywords (`pg_get_keywords()`; `kwlist.h`), with their category:
/// words the lexer reads as identifiers, that the normalizer renders as keywords where they
/// act as one (see [`Category`]). Sorted.
pub(crate) const MORE_KEYWORDS: &[(&str, Category)] = &[
    ("ABORT", Category::Unreserved),
    ("ABSOLUTE", Category::Unreserved),
    ("ACCESS", Category::Unreserved),
    ("ACTION", Category::Unreserved),
    ("ADD", Category::Unreserved),
    ("ADMIN", Category::Unreserved),
    ("AFTER", Category::Unreserved),
    ("AGGREGATE", Category::Unreserved),
    ("ALSO", Category::Unreserved),
    ("ALWAYS", Category::Unreserved),
    ("ANALYSE", Category::Reserved),
    ("ASENSITIVE", Category::Unreserved),
    ("ASSERTION", Category::Unreserved),
    ("ASSIGNMENT", Category::Unreserved),
    ("ASYMMETRIC", Category::Reserved),
    ("AT", Category::Unreserved),
    ("ATOMIC", Category::Unreserved),
    ("ATTACH", Category::Unreserved),
    ("ATTRIBUTE", Category::Unreserved),
    ("AUTHORIZATION", Category::TypeFunc),
    ("BACKWARD", Category::Unreserved),
    ("BEFORE", Category::Unreserved),
    ("BIGINT", Category::ColName),
    ("BINARY", Category::TypeFunc),
    ("BIT", Category::ColName),
    ("BOOLEAN", Category::ColName),
    ("BREADTH", Category::Unreserved),
    ("CACHE", Category::Unreserved),
    ("CALLED", Category::Unreserved),
    ("CASCADED", Category::Unreserved),
    ("CATALOG", Category::Unreserved),
    ("CHAIN", Category::Unreserved),
    ("CHAR", Category::ColName),
    ("CHARACTER", Category::ColName),
    ("CHARACTERISTICS", Category::Unreserved),
    ("CHECKPOINT", Category::Unreserved),
    ("CLASS", Category::Unreserved),
    ("CLOSE", Category::Unreserved),
    ("CLUSTER", Category::Unreserved),
    ("COLLATION", Category::TypeFunc),
    ("COLUMNS", Category::Unreserved),
    ("COMMENT", Category::Unreserved),
    ("COMMENTS", Category::Unreserved),
    ("COMMITTED", Category::Unreserved),
    ("COMPRESSION", Category::Unreserved),
    ("CONCURRENTLY", Category::TypeFunc),
    ("CONFIGURATION", Category::Unreserved),
    ("CONNECTION", Category::Unreserved),
    ("CONSTRAINTS", Category::Unreserved),
    ("CONTENT", Category::Unreserved),
    ("CONTINUE", Category::Unreserved),
    ("CONVERSION", Category::Unreserved),
    ("COST", Category::Unreserved),
    ("CSV", Category::Unreserved),
    ("CUBE", Category::Unreserved),
    ("CURRENT", Category::Unreserved),
    ("CURRENT_CATALOG", Category::Reserved),
    ("CURRENT_ROLE", Category::Reserved),
    ("CURRENT_SCHEMA", Category::TypeFunc),
    ("CURSOR", Category::Unreserved),
    ("CYCLE", Category::Unreserved),
    ("DATA", Category::Unreserved),
    ("DATABASE", Category::Unreserved),
    ("DAY", Category::Unreserved),
    ("DEC", Category::ColName),
    ("DECIMAL", Category::ColName),
    ("DECLARE", Category::Unreserved),
    ("DEFAULTS", Category::Unreserved),
    ("DEFERRABLE", Category::Reserved),
    ("DEFERRED", Category::Unreserved),
    ("DEFINER", Category::Unreserved),
    ("DELIMITER", Category::Unreserved),
    ("DELIMITERS", Category::Unreserved),
    ("DEPENDS", Category::Unreserved),
    ("DEPTH", Category::Unreserved),
    ("DETACH", Category::Unreserved),
    ("DICTIONARY", Category::Unreserved),
    ("DISABLE", Category::Unreserved),
    ("DISCARD", Category::Unreserved),
    ("DOCUMENT", Category::Unreserved),
    ("DOMAIN", Category::Unreserved),
    ("DOUBLE", Category::Unreserved),
    ("EACH", Category::Unreserved),
    ("ENABLE", Category::Unreserved),
    ("ENCODING", Category::Unreserved),
    ("ENCRYPTED", Category::Unreserved),
    ("ENUM", Category::Unreserved),
    ("ESCAPE", Category::Unreserved),
    ("EVENT", Category::Unreserved),
    ("EXCLUDE", Category::Unreserved),
    ("EXCLUDING", Category::Unreserved),
    ("EXCLUSIVE", Category::Unreserved),
    ("EXPRESSION", Category::Unreserved),
    ("EXTENSION", Category::Unreserved),
    ("EXTERNAL", Category::Unreserved),
    ("FAMILY", Category::Unreserved),
    ("FINALIZE", Category::Unreserved),
    ("FLOAT", Category::ColName),
    ("FOLLOWING", Category::Unreserved),
    ("FORCE", Category::Unreserved),
    ("FORWARD", Category::Unreserved),
    ("FREEZE", Category::TypeFunc),
    ("FUNCTION", Category::Unreserved),
    ("FUNCTIONS", Category::Unreserved),
    ("GENERATED", Category::Unreserved),
    ("GLOBAL", Category::Unreserved),
    ("GRANTED", Category::Unreserved),
    ("GROUPING", Category::ColName),
    ("GROUPS", Category::Unreserved),
    ("HANDLER", Category::Unreserved),
    ("HEADER", Category::Unreserved),
    ("HOLD", Category::Unreserved),
    ("HOUR", Category::Unreserved),
    ("IDENTITY", Category::Unreserved),
    ("IMMEDIATE", Category::Unreserved),
    ("IMMUTABLE", Category::Unreserved),
    ("IMPLICIT", Category::Unreserved),
    ("IMPORT", Category::Unreserved),
    ("INCLUDE", Category::Unreserved),
    ("INCLUDING", Category::Unreserved),
    ("INCREMENT", Category::Unreserved),
    ("INDEXES", Category::Unreserved),
    ("INHERIT", Category::Unreserved),
    ("INHERITS", Category::Unreserved),
    ("INITIALLY", Category::Reserved),
    ("INLINE", Category::Unreserved),
    ("INOUT", Category::ColName),
    ("INPUT", Category::Unreserved),
    ("INSENSITIVE", Category::Unreserved),
    ("INSTEAD", Category::Unreserved),
    ("INT", Category::ColName),
    ("INTEGER", Category::ColName),
    ("INVOKER", Category::Unreserved),
    ("ISOLATION", Category::Unreserved),
    ("LABEL", Category::Unreserved),
    ("LANGUAGE", Category::Unreserved),
    ("LARGE", Category::Unreserved),
    ("LEAKPROOF", Category::Unreserved),
    ("LEVEL", Category::Unreserved),
    ("LISTEN", Category::Unreserved),
    ("LOAD", Category::Unreserved),
    ("LOCAL", Category::Unreserved),
    ("LOCALTIME", Category::Reserved),
    ("LOCALTIMESTAMP", Category::Reserved),
    ("LOCATION", Category::Unreserved),
    ("LOGGED", Category::Unreserved),
    ("MAPPING", Category::Unreserved),
    ("MATCH", Category::Unreserved),
    ("MATCHED", Category::Unreserved),
    ("MATERIALIZED", Category::Unreserved),
    ("MAXVALUE", Category::Unreserved),
    ("METHOD", Category::Unreserved),
    ("MINUTE", Category::Unreserved),
    ("MINVALUE", Category::Unreserved),
    ("MODE", Category::Unreserved),
    ("MONTH", Category::Unreserved),
    ("MOVE", Category::Unreserved),
    ("NAME", Category::Unreserved),
    ("NAMES", Category::Unreserved),
    ("NATIONAL", Category::ColName),
    ("NCHAR", Category::ColName),
    ("NEW", Category::Unreserved),
    ("NFC", Category::Unreserved),
    ("NFD", Category::Unreserved),
    ("NFKC", Category::Unreserved),
    ("NFKD", Category::Unreserved),
    ("NO", Category::Unreserved),
    ("NONE", Category::ColName),
    ("NORMALIZE", Category::ColName),
    ("NORMALIZED", Category::Unreserved),
    ("NOTIFY", Category::Unreserved),
    ("NUMERIC", Category::ColName),
    ("OBJECT", Category::Unreserved),
    ("OF", Category::Unreserved),
    ("OFF", Category::Unreserved),
    ("OIDS", Category::Unreserved),
    ("OLD", Category::Unreserved),
    ("OPERATOR", Category::Unreserved),
    ("OPTION", Category::Unreserved),
    ("OPTIONS", Category::Unreserved),
    ("ORDINALITY", Category::Unreserved),
    ("OTHERS", Category::Unreserved),
    ("OUT", Category::ColName),
    ("OVERLAPS", Category::TypeFunc),
    ("OVERLAY", Category::ColName),
    ("OVERRIDING", Category::Unreserved),
    ("OWNED", Category::Unreserved),
    ("OWNER", Category::Unreserved),
    ("PARALLEL", Category::Unreserved),
    ("PARAMETER", Category::Unreserved),
    ("PARSER", Category::Unreserved),
    ("PARTIAL", Category::Unreserved),
    ("PASSING", Category::Unreserved),
    ("PASSWORD", Category::Unreserved),
    ("PLACING", Category::Reserved),
    ("PLANS", Category::Unreserved),
    ("POLICY", Category::Unreserved),
    ("POSITION", Category::ColName),
    ("PRECEDING", Category::Unreserved),
    ("PRECISION", Category::ColName),
    ("PREPARED", Category::Unreserved),
    ("PRESERVE", Category::Unreserved),
    ("PRIOR", Category::Unreserved),
    ("PRIVILEGES", Category::Unreserved),
    ("PROCEDURAL", Category::Unreserved),
    ("PROCEDURE", Category::Unreserved),
    ("PROCEDURES", Category::Unreserved),
    ("PROGRAM", Category::Unreserved),
    ("PUBLICATION", Category::Unreserved),
    ("QUOTE", Category::Unreserved),
    ("RANGE", Category::Unreserved),
    ("READ", Category::Unreserved),
    ("REAL", Category::ColName),
    ("REASSIGN", Category::Unreserved),
    ("RECHECK", Category::Unreserved),
    ("RECURSIVE", Category::Unreserved),
    ("REF", Category::Unreserved),
    ("REFERENCING", Category::Unreserved),
    ("REFRESH", Category::Unreserved),
    ("REINDEX", Category::Unreserved),
    ("RELATIVE", Category::Unreserved),
    ("RENAME", Category::Unreserved),
    ("REPEATABLE", Category::Unreserved),
    ("REPLACE", Category::Unreserved),
    ("REPLICA", Category::Unreserved),
    ("RESET", Category::Unreserved),
    ("RESTART", Category::Unreserved),
    ("RESTRICT", Category::Unreserved),
    ("RETURN", Category::Unreserved),
    ("RETURNS", Category::Unreserved),
    ("ROLE", Category::Unreserved),
    ("ROLLUP", Category::Unreserved),
    ("ROUTINE", Category::Unreserved),
    ("ROUTINES", Category::Unreserved),
    ("RULE", Category::Unreserved),
    ("SCHEMA", Category::Unreserved),
    ("SCHEMAS", Category::Unreserved),
    ("SCROLL", Category::Unreserved),
    ("SEARCH", Category::Unreserved),
    ("SECOND", Category::Unreserved),
    ("SECURITY", Category::Unreserved),
    ("SEQUENCE", Category::Unreserved),
    ("SEQUENCES", Category::Unreserved),
    ("SERIALIZABLE", Category::Unreserved),
    ("SERVER", Category::Unreserved),
    ("SESSION", Category::Unreserved),
    ("SESSION_USER", Category::Reserved),
    ("SETOF", Category::ColName),
    ("SETS", Category::Unreserved),
    ("SIMPLE", Category::Unreserved),
    ("SMALLINT", Category::ColName),
    ("SNAPSHOT", Category::Unreserved),
    ("SQL", Category::Unreserved),
    ("STABLE", Category::Unreserved),
    ("STANDALONE", Category::Unreserved),
    ("STATEMENT", Category::Unreserved),
    ("STATISTICS", Category::Unreserved),
    ("STDIN", Category::Unreserved),
    ("STDOUT", Category::Unreserved),
    ("STORAGE", Category::Unreserved),
    ("STORED", Category::Unreserved),
    ("STRICT", Category::Unreserved),
    ("STRIP", Category::Unreserved),
    ("SUBSCRIPTION", Category::Unreserved),
    ("SUBSTRING", Category::ColName),
    ("SUPPORT", Category::Unreserved),
    ("SYMMETRIC", Category::Reserved),
    ("SYSID", Category::Unreserved),
    ("SYSTEM", Category::Unreserved),
    ("TABLES", Category::Unreserved),
    ("TABLESAMPLE", Category::TypeFunc),
    ("TABLESPACE", Category::Unreserved),
    ("TEMP", Category::Unreserved),
    ("TEMPLATE", Category::Unreserved),
    ("TEMPORARY", Category::Unreserved),
    ("TEXT", Category::Unreserved),
    ("TIES", Category::Unreserved),
    ("TRANSFORM", Category::Unreserved),
    ("TREAT", Category::ColName),
    ("TRIGGER", Category::Unreserved),
    ("TRIM", Category::ColName),
    ("TRUSTED", Category::Unreserved),
    ("TYPE", Category::Unreserved),
    ("TYPES", Category::Unreserved),
    ("UESCAPE", Category::Unreserved),
    ("UNBOUNDED", Category::Unreserved),
    ("UNCOMMITTED", Category::Unreserved),
    ("UNENCRYPTED", Category::Unreserved),
    ("UNKNOWN", Category::Unreserved),
    ("UNLISTEN", Category::Unreserved),
    ("UNLOGGED", Category::Unreserved),
    ("UNTIL", Category::Unreserved),
    ("USER", Category::Reserved),
    ("VALID", Category::Unreserved),
    ("VALIDATE", Category::Unreserved),
    ("VALIDATOR", Category::Unreserved),
    ("VALUE", Category::Unreserved),
    ("VARCHAR", Category::ColName),
    ("VARIADIC", Category::Reserved),
    ("VARYING", Category::Unreserved),
    ("VERBOSE", Category::TypeFunc),
    ("VERSION", Category::Unreserved),
    ("VIEWS", Category::Unreserved),
    ("VOLATILE", Category::Unreserved),
    ("WHITESPACE", Category::Unreserved),
    ("WITHOUT", Category::Unreserved),
    ("WORK", Category::Unreserved),
    ("WRAPPER", Category::Unreserved),
    ("WRITE", Category::Unreserved),
    ("XML", Category::Unreserved),
    ("XMLATTRIBUTES", Category::ColName),
    ("XMLCONCAT", Category::ColName),
    ("XMLELEMENT", Category::ColName),
    ("XMLEXISTS", Category::ColName),
    ("XMLFOREST", Category::ColName),
    ("XMLNAMESPACES", Category::ColName),
    ("XMLPARSE", Category::ColName),
    ("XMLPI", Category::ColName),
    ("XMLROOT", Category::ColName),
    ("XMLSERIALIZE", Category::ColName),
    ("XMLTABLE", Category::ColName),
    ("YEAR", Category::Unreserved),
    ("YES", Category::Unreserved),
    ("ZONE", Category::Unreserved),
];

/// Slots of the lookup table: a power of two, about three times the words.
const BITS: u32 = 10;
const N: usize = MORE_KEYWORDS.len();

/// Open-addressing table (linear probing) built at compile time: slot values are an index + 1,
/// 0 for an empty slot.
struct Table {
    slots: [u16; 1 << BITS],
    heads: [u64; N],
    tails: [u64; N],
    lens: [u8; N],
}

const fn hash(len: usize, head: u64, tail: u64) -> usize {
    let k = head ^ ((len as u64) << 59) ^ tail.rotate_left(27);
    (k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BITS)) as usize
}

static TABLE: Table = {
    let mut t = Table {
        slots: [0; 1 << BITS],
        heads: [0; N],
        tails: [0; N],
        lens: [0; N],
    };
    let mut i = 0;
    while i < N {
        let w = MORE_KEYWORDS[i].0.as_bytes();
        t.heads[i] = head(w);
        t.tails[i] = tail(w);
        t.lens[i] = w.len() as u8;
        let mut at = hash(w.len(), t.heads[i], t.tails[i]);
        while t.slots[at] != 0 {
            at = (at + 1) & ((1 << BITS) - 1);
        }
        t.slots[at] = (i + 1) as u16;
        i += 1;
    }
    t
};

/// For each first letter (folded, `A`..=`Z` as 0..26) and length (up to 31), a bit per last
/// letter (`A`..=`Z` as 0..26, `_` as 26) that some word of [`MORE_KEYWORDS`] has: nearly every
/// identifier that is not one of them (`users`, `id`, `created_at`) is ruled out by one load
/// and one test, before any hashing.
static SHAPES: [[u32; 32]; 26] = {
    let mut t = [[0u32; 32]; 26];
    let mut i = 0;
    while i < N {
        let w = MORE_KEYWORDS[i].0.as_bytes();
        let last = w[w.len() - 1];
        let bit = if last == b'_' { 26 } else { last - b'A' };
        t[(w[0] - b'A') as usize][w.len()] |= 1 << bit;
        i += 1;
    }
    t
};

/// The category of `word` (any case) if it is one of [`MORE_KEYWORDS`].
#[inline]
pub(crate) fn category(word: &[u8]) -> Option<Category> {
    let (&first, &last) = (word.first()?, word.last()?);
    let first = usize::from(fold(first).wrapping_sub(b'A'));
    let last = match fold(last) {
        b if b.is_ascii_uppercase() => b - b'A',
        _ if last == b'_' => 26,
        _ => return None,
    };
    let lasts = *SHAPES.get(first)?.get(word.len())?;
    if lasts & (1 << last) == 0 {
        return None;
    }
    probe(word)
}

#[inline(never)]
fn probe(word: &[u8]) -> Option<Category> {
    let (h, tl) = (head(word), tail(word));
    let t = &TABLE;
    let mut at = hash(word.len(), h, tl);
    loop {
        let slot = usize::from(t.slots[at]);
        if slot == 0 {
            return None;
        }
        let i = slot - 1;
        if t.heads[i] == h
            && t.tails[i] == tl
            && usize::from(t.lens[i]) == word.len()
            && (word.len() <= 16 || middle_eq(MORE_KEYWORDS[i].0.as_bytes(), word))
        {
            return Some(MORE_KEYWORDS[i].1);
        }
        at = (at + 1) & ((1 << BITS) - 1);
    }
}

#[cold]
fn middle_eq(keyword: &[u8], word: &[u8]) -> bool {
    keyword.iter().zip(word).all(|(&k, &w)| k == fold(w))
}

/// Keywords after which a name comes (a column, a table, an alias, an expression).
static INTRODUCES_NAME: [bool; super::keywords::COUNT] = set(&[
    "ALTER",
    "AND",
    "AS",
    "BETWEEN",
    "BY",
    "CASE",
    "COLUMN",
    "CONSTRAINT",
    "DELETE",
    "DISTINCT",
    "DROP",
    "ELSE",
    "FROM",
    "HAVING",
    "ILIKE",
    "INDEX",
    "INSERT",
    "INTO",
    "JOIN",
    "LIKE",
    "NOT",
    "ON",
    "ONLY",
    "OR",
    "REFERENCES",
    "RETURNING",
    "SELECT",
    "SET",
    "TABLE",
    "THEN",
    "TO",
    "TRUNCATE",
    "UPDATE",
    "USING",
    "VIEW",
    "WHEN",
    "WHERE",
    "WITH",
]);

const IN: u8 = super::keywords::index_of("IN");

/// The words of a lock mode that can follow `IN` (`ROW` and `SHARE` are always keywords).
fn is_lock_mode(word: &[u8]) -> bool {
    word.eq_ignore_ascii_case(b"ACCESS") || word.eq_ignore_ascii_case(b"EXCLUSIVE")
}

/// Words that follow an expression or a name as keywords (`ts AT TIME ZONE`, `LIKE $1
/// ESCAPE $2`, `WITH ORDINALITY`, `ALTER TABLE t ADD …`): never taken for an alias.
fn follows_expressions(word: &[u8]) -> bool {
    [
        &b"AT"[..],
        b"ESCAPE",
        b"ORDINALITY",
        b"UESCAPE",
        b"ADD",
        b"RENAME",
        b"OWNER",
        b"ATTACH",
        b"DETACH",
        b"ENABLE",
        b"DISABLE",
        b"VALIDATE",
        b"INHERIT",
        b"RESET",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(word))
}

/// What the normalizer knows of the word before the one it renders, when that was an
/// unquoted identifier: whether it is one of [`MORE_KEYWORDS`], and if so whether it was
/// rendered as a keyword (a phrase, `ACCESS EXCLUSIVE MODE`) or as a name (`name text` in a
/// column list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prev {
    /// A plain identifier.
    Name,
    /// One of these keywords, rendered as a keyword.
    Keyword(Category),
    /// One of these keywords, rendered as a name.
    AsName(Category),
}

/// Whether the unquoted identifier `word`, token `toks[i]` of `sql`, is rendered as a keyword
/// (one of PostgreSQL's keywords standing where a keyword does, see the module docs), as a
/// [`Prev`] for the next word; `prev_word`: the same for the token before it, when that was an
/// unquoted identifier.
pub(crate) fn classify(word: &[u8], toks: &[Tok], i: usize, prev_word: Prev) -> Prev {
    let Some(kind) = category(word) else {
        return Prev::Name;
    };
    if renders_as_keyword(word, kind, toks, i, prev_word) {
        Prev::Keyword(kind)
    } else {
        Prev::AsName(kind)
    }
}

fn renders_as_keyword(
    word: &[u8],
    kind: Category,
    toks: &[Tok],
    i: usize,
    prev_word: Prev,
) -> bool {
    let next = toks.get(i + 1);
    if matches!(kind, Category::Reserved | Category::TypeFunc) {
        return true;
    }
    // A qualified name, a function call or a type with a modifier: `t.name`, `name.x`,
    // `position(…)`, `numeric(10, 2)`.
    if matches!(next, Some(Tok::Punct(b'.' | b'('))) {
        return false;
    }
    let Some(prev) = i.checked_sub(1).map(|j| &toks[j]) else {
        // It starts the statement: a command (`VACUUM`, `COMMENT ON …`, `LISTEN`).
        return true;
    };
    if matches!(prev, Tok::Punct(b'.' | b',' | b'(') | Tok::Cast) {
        return false;
    }
    if follows_expressions(word) {
        return true;
    }
    match prev {
        Tok::Punct(_) | Tok::Op(_) | Tok::Const(_) | Tok::Param | Tok::QuotedIdent(_) => false,
        // `IN` takes a name in `position(x IN name)`, a lock mode in `LOCK … IN ACCESS
        // EXCLUSIVE MODE`.
        Tok::Word(_, Some(IN)) => is_lock_mode(word),
        Tok::Word(_, Some(k)) => !INTRODUCES_NAME[usize::from(*k)],
        Tok::Word(_, None) => match prev_word {
            // A phrase of keywords: `ACCESS EXCLUSIVE MODE`, `ISOLATION LEVEL …`.
            Prev::Keyword(Category::ColName | Category::Unreserved) => true,
            // After a reserved one (`CONCURRENTLY`, `VERBOSE`), a name.
            Prev::Keyword(_) => false,
            // Right after a name (or a keyword that stood as one: `name text`): a type or an
            // alias (`FROM events data`).
            Prev::Name | Prev::AsName(_) => false,
        },
        Tok::Cast | Tok::Other(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_finds_every_word_and_no_near_miss() {
        assert!(
            MORE_KEYWORDS.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, hence no duplicates"
        );
        for (w, c) in MORE_KEYWORDS {
            assert_eq!(category(w.as_bytes()), Some(*c), "{w}");
            assert_eq!(category(w.to_lowercase().as_bytes()), Some(*c), "{w}");
            assert_eq!(
                category(format!("{w}S").as_bytes()).is_some(),
                MORE_KEYWORDS.iter().any(|(k, _)| *k == format!("{w}S")),
                "{w}S"
            );
            assert_eq!(
                category(&w.as_bytes()[1..]).is_some(),
                MORE_KEYWORDS
                    .iter()
                    .any(|(k, _)| k.as_bytes() == &w.as_bytes()[1..]),
                "{w}"
            );
        }
        for w in ["users", "id", "select", "x", "created_at", "email"] {
            assert_eq!(category(w.as_bytes()), None, "{w}");
        }
        // Disjoint from the words always upper-cased.
        for (w, _) in MORE_KEYWORDS {
            assert_eq!(super::super::keywords::keyword(w.as_bytes()), None, "{w}");
        }
    }
}
