//! Token stream → normalized text and the statement's operation.
//!
//! Normalization is a single left-to-right walk with bounded look-ahead (list collapsing scans
//! forward once and stops at the first token that is not a constant), so it is linear in the
//! input and uses no recursion however deeply the parentheses nest.

use super::lexer::{Tok, within8};

use super::keywords::{self, index_of};
use super::more_keywords::Prev;

/// Keywords written like functions: no space before their `(`.
static FUNCTION_LIKE: [bool; keywords::COUNT] = keywords::set(&[
    "ANY", "ALL", "ARRAY", "SOME", "COALESCE", "NULLIF", "GREATEST", "LEAST", "CAST", "EXTRACT",
    "ROW",
]);

/// Keywords after which a `-` is a sign, not subtraction (`WHERE -5 < x`, `LIMIT -1`).
static SIGN_CONTEXT: [bool; keywords::COUNT] = keywords::set(&[
    "AND",
    "BETWEEN",
    "BY",
    "CASE",
    "DEFAULT",
    "DISTINCT",
    "ELSE",
    "FETCH",
    "HAVING",
    "ILIKE",
    "LIKE",
    "LIMIT",
    "NOT",
    "OFFSET",
    "ON",
    "OR",
    "RETURNING",
    "SELECT",
    "SET",
    "THEN",
    "WHEN",
    "WHERE",
]);

/// Keywords with a rule of their own in [`normalize_into`] (lists, and constants spelled as
/// words): every other word takes the one branch-free path of [`Renderer::word`].
static SPECIAL: [bool; keywords::COUNT] =
    keywords::set(&["IN", "VALUES", "ARRAY", "NULL", "TRUE", "FALSE"]);

/// The spacing kind of a word, by keyword index, with one more entry (the last) for a word
/// that is no keyword.
static WORD_KIND: [Last; keywords::COUNT + 1] = {
    let mut t = [Last::Keyword; keywords::COUNT + 1];
    let mut k = 0;
    while k < keywords::COUNT {
        if FUNCTION_LIKE[k] {
            t[k] = Last::FunctionKeyword;
        }
        k += 1;
    }
    t[keywords::COUNT] = Last::Ident;
    t
};

// The keywords the normalizer's rules name, as indices (a token carries its keyword's index).
const IN: u8 = index_of("IN");
const VALUES: u8 = index_of("VALUES");
const ARRAY: u8 = index_of("ARRAY");
const NULL: u8 = index_of("NULL");
const TRUE: u8 = index_of("TRUE");
const FALSE: u8 = index_of("FALSE");
const IS: u8 = index_of("IS");
const NOT: u8 = index_of("NOT");
const BY: u8 = index_of("BY");

/// What the previous rendered piece was, for spacing.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    Start,
    Keyword,
    FunctionKeyword,
    Ident,
    Value,
    Op,
    Open,
    Close,
    Tight,
    Sep,
}

struct Renderer<'a> {
    sql: &'a str,
    /// The caller's buffer, the text appended from `start` on: bytes, so that fixed-size
    /// copies can be cut back anywhere; only whole UTF-8 sequences remain once a piece is done.
    out: &'a mut Vec<u8>,
    start: usize,
    last: Last,
    placeholders: u32,
    /// What the text shows but the identity does not, and the other way round, by position in
    /// the text, in increasing order. `"user"` is shown quoted (unquoted it would be the `user`
    /// keyword, and the shown SQL would not be valid) but fingerprints as `user` did before.
    hidden: Vec<(usize, Hidden)>,
}

/// A difference between the displayed text and the text the id hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hidden {
    /// The byte at this position is shown but not hashed (a display-only quote).
    Shown,
}

/// XXH3-64 of `text` as the id sees it: with the `hidden` differences applied.
fn id(text: &[u8], hidden: &[(usize, Hidden)]) -> u64 {
    if hidden.is_empty() {
        return xxhash_rust::xxh3::xxh3_64(text);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::new();
    let mut from = 0;
    for &(at, hidden) in hidden {
        hasher.update(&text[from..at]);
        match hidden {
            Hidden::Shown => from = at + 1,
        }
    }
    hasher.update(&text[from..]);
    hasher.digest()
}

/// PostgreSQL's reserved key words (reserved, and reserved but allowed as function or type
/// names) that the keyword table does not list: a quoted identifier spelled like one keeps its
/// quotes in the displayed text.
fn reserved(word: &str) -> bool {
    matches!(
        word,
        "analyse"
            | "asymmetric"
            | "authorization"
            | "binary"
            | "collate"
            | "collation"
            | "column"
            | "concurrently"
            | "constraint"
            | "create"
            | "current_catalog"
            | "current_role"
            | "current_schema"
            | "current_user"
            | "deferrable"
            | "desc"
            | "do"
            | "except"
            | "fetch"
            | "for"
            | "foreign"
            | "freeze"
            | "grant"
            | "initially"
            | "intersect"
            | "isnull"
            | "lateral"
            | "leading"
            | "localtime"
            | "localtimestamp"
            | "notnull"
            | "offset"
            | "only"
            | "overlaps"
            | "placing"
            | "primary"
            | "references"
            | "returning"
            | "session_user"
            | "similar"
            | "some"
            | "symmetric"
            | "system_user"
            | "table"
            | "tablesample"
            | "to"
            | "trailing"
            | "union"
            | "unique"
            | "user"
            | "variadic"
            | "verbose"
            | "window"
    )
}

/// What comes next, for spacing: most pieces are [`Next::Other`].
#[derive(Clone, Copy)]
enum Next {
    Other,
    /// `) ] , ; . :` and `::`: never a space before them.
    Closing,
    Paren,
    Bracket,
}

/// Whether no space goes between a piece of kind `last` and a `next` one.
const fn tight(last: Last, next: Next) -> bool {
    matches!(
        (last, next),
        (Last::Start | Last::Open | Last::Tight, _)
            | (_, Next::Closing)
            | (
                Last::Ident | Last::FunctionKeyword | Last::Close,
                Next::Paren
            )
            | (
                Last::Ident | Last::Close | Last::Value | Last::FunctionKeyword,
                Next::Bracket
            )
    )
}

/// [`tight`] as a table, so that spacing is a load, not a chain of branches.
static TIGHT: [[bool; 4]; 10] = {
    const LAST: [Last; 10] = [
        Last::Start,
        Last::Keyword,
        Last::FunctionKeyword,
        Last::Ident,
        Last::Value,
        Last::Op,
        Last::Open,
        Last::Close,
        Last::Tight,
        Last::Sep,
    ];
    const NEXT: [Next; 4] = [Next::Other, Next::Closing, Next::Paren, Next::Bracket];
    let mut t = [[false; 4]; 10];
    let mut l = 0;
    while l < LAST.len() {
        // The table is indexed by the discriminants: check they are in this order.
        assert!(LAST[l] as usize == l);
        let mut n = 0;
        while n < NEXT.len() {
            assert!(NEXT[n] as usize == n);
            t[l][n] = tight(LAST[l], NEXT[n]);
            n += 1;
        }
        l += 1;
    }
    t
};

/// `$1` to `$9`, the placeholders nearly every statement stops at, two bytes each.
static SMALL_PLACEHOLDERS: &[u8; 20] = b"$0$1$2$3$4$5$6$7$8$9";

impl Renderer<'_> {
    /// Writes the space that goes between the last piece and a `next` one, if any: always
    /// written, then kept or not, without a branch.
    fn space_before(&mut self, next: Next) {
        let keep = !TIGHT[self.last as usize][next as usize];
        let len = self.out.len();
        self.out.push(b' ');
        self.out.truncate(len + usize::from(keep));
    }

    fn push(&mut self, kind: Last, next: Next, text: &str) {
        self.space_before(next);
        self.out.extend_from_slice(text.as_bytes());
        self.last = kind;
    }

    fn placeholder(&mut self) {
        self.placeholders += 1;
        self.space_before(Next::Other);
        let n = self.placeholders as usize;
        if n < 10 {
            self.out
                .extend_from_slice(&SMALL_PLACEHOLDERS[2 * n..2 * n + 2]);
        } else {
            self.out.push(b'$');
            push_u32(self.out, self.placeholders);
        }
        self.last = Last::Value;
    }

    /// An unquoted word: a keyword upper-cased (a keyword's letters are the word's, so this
    /// spells the keyword), an identifier lower-cased.
    #[inline(always)]
    fn word(&mut self, range: std::ops::Range<usize>, kw: Option<u8>) {
        self.word_as(
            range,
            kw.is_some(),
            WORD_KIND[usize::from(kw.unwrap_or(keywords::COUNT as u8))],
        );
    }

    /// A word in keyword case (`upper`) or identifier case, then spaced as `last`.
    #[inline(always)]
    fn word_as(&mut self, range: std::ops::Range<usize>, upper: bool, last: Last) {
        self.space_before(Next::Other);
        let start = self.out.len();
        let sql = self.sql.as_bytes();
        let len = range.len();
        // Short words (nearly all) as one 16-byte copy of the input, its case set eight bytes
        // at a time and cut back to the word: no loop, and no branch on the word's length nor
        // on whether it is a keyword (which is as unpredictable as it gets).
        match sql[range.start..].first_chunk::<16>() {
            Some(wide) if len <= 16 => {
                // The letters in the wrong case for this word (lower-case ones in a keyword,
                // upper-case ones in an identifier) have their case bit flipped: one range
                // test, its bounds chosen by whether the word is a keyword.
                let (lo, hi) = if upper { (b'a', b'z') } else { (b'A', b'Z') };
                let case = |bytes: &[u8]| {
                    let x = u64::from_le_bytes(bytes.try_into().unwrap_or_default());
                    (x ^ (within8(x, lo, hi) >> 2)).to_le_bytes()
                };
                let (a, b) = wide.split_at(8);
                self.out.extend_from_slice(&case(a));
                self.out.extend_from_slice(&case(b));
                self.out.truncate(start + len);
            }
            _ => {
                self.out.extend_from_slice(&sql[range]);
                if upper {
                    self.out[start..].make_ascii_uppercase();
                } else {
                    self.out[start..].make_ascii_lowercase();
                }
            }
        }
        self.last = last;
    }

    /// The position the next piece is written at, in the text.
    fn at(&self) -> usize {
        self.out.len() - self.start
    }

    /// The id of the rendered text.
    fn finish(self) -> u64 {
        id(&self.out[self.start..], &self.hidden)
    }
}

fn push_u32(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; 10];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn is_numeric_at(sql: &str, pos: usize) -> bool {
    sql.as_bytes()
        .get(pos)
        .is_some_and(|b| b.is_ascii_digit() || *b == b'.')
}

/// One element of a collapsible constant list: `[-] const-or-param [:: type [ [] ]]`, where
/// NULL/TRUE/FALSE count as constants. Returns the index after the element.
fn const_element(sql: &str, toks: &[Tok], mut i: usize) -> Option<usize> {
    if matches!(toks.get(i), Some(Tok::Op(r)) if &sql[r.clone()] == "-") {
        i += 1;
    }
    match toks.get(i)? {
        Tok::Const(_) | Tok::Param => {}
        Tok::Word(_, Some(NULL | TRUE | FALSE)) => {}
        _ => return None,
    }
    i += 1;
    if toks.get(i) == Some(&Tok::Cast)
        && matches!(toks.get(i + 1), Some(Tok::Word(..) | Tok::QuotedIdent(_)))
    {
        i += 2;
        if toks.get(i) == Some(&Tok::Punct(b'[')) && toks.get(i + 1) == Some(&Tok::Punct(b']')) {
            i += 2;
        }
    }
    Some(i)
}

/// `open elem (, elem)* close` starting at `i` (which must be `open`); index after `close`.
fn const_list(sql: &str, toks: &[Tok], i: usize, open: u8, close: u8) -> Option<usize> {
    if toks.get(i) != Some(&Tok::Punct(open)) {
        return None;
    }
    let mut j = const_element(sql, toks, i + 1)?;
    loop {
        match toks.get(j)? {
            Tok::Punct(b',') => j = const_element(sql, toks, j + 1)?,
            Tok::Punct(c) if *c == close => return Some(j + 1),
            _ => return None,
        }
    }
}

/// `VALUES (..), (..)` with constant-only rows; index after the last row.
fn values_rows(sql: &str, toks: &[Tok], i: usize) -> Option<usize> {
    let mut j = const_list(sql, toks, i, b'(', b')')?;
    while toks.get(j) == Some(&Tok::Punct(b',')) {
        match const_list(sql, toks, j + 1, b'(', b')') {
            Some(next) => j = next,
            None => return None,
        }
    }
    Some(j)
}

/// Renders the normalized text: constants and parameters become `$1, $2, …` in order of
/// appearance, constant lists collapse to `(...)`, keywords are upper-cased, identifiers
/// lower-cased, comments and redundant whitespace disappear.
/// The statement's operation: its first keyword when that is a command (`BEGIN`, `CREATE`),
/// else its first `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`MERGE` (so `WITH … SELECT` is a
/// `SELECT`); matches the first word of the summary.
pub(crate) fn operation(toks: &[Tok]) -> &'static str {
    match toks.first() {
        Some(t @ Tok::Word(..)) => match t.keyword() {
            Some(k) if !matches!(k, "WITH" | "VALUES") && !DML.contains(&k) => k,
            Some(_) => first_dml(toks),
            None => "",
        },
        None => "",
        _ => first_dml(toks),
    }
}

/// The statements an [`operation`] names when the first keyword is not a command.
const DML: [&str; 5] = ["SELECT", "INSERT", "UPDATE", "DELETE", "MERGE"];

/// The first of [`DML`] in the statement, else empty.
fn first_dml(toks: &[Tok]) -> &'static str {
    toks.iter()
        .find_map(|t| t.keyword().filter(|k| DML.contains(k)))
        .unwrap_or("")
}

/// The normalized text of `sql` (tokenized as `toks`) and its id.
pub(crate) fn normalize(sql: &str, toks: &[Tok]) -> (String, u64) {
    let mut text = Vec::with_capacity(sql.len().min(4096));
    let id = normalize_into(sql, toks, &mut text);
    (utf8(text), id)
}

/// Rendered text as a `String`. Every piece written is whole UTF-8 (input cut at ASCII bytes,
/// or ASCII), so the check cannot fail; it is a fast ASCII scan of a short string.
pub(crate) fn utf8(text: Vec<u8>) -> String {
    String::from_utf8(text).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Appends the normalized text of `sql` (tokenized as `toks`) to `out` and returns its id: a
/// caller that fingerprints many statements renders them straight into its own buffer.
pub(crate) fn normalize_into(sql: &str, toks: &[Tok], out: &mut Vec<u8>) -> u64 {
    let mut r = Renderer {
        sql,
        start: out.len(),
        out,
        last: Last::Start,
        placeholders: 0,
        hidden: Vec::new(),
    };
    // Number of trailing `;` to drop so `SELECT 1;` equals `SELECT 1`.
    let mut end = toks.len();
    while end > 0 && toks[end - 1] == Tok::Punct(b';') {
        end -= 1;
    }
    let toks = &toks[..end];
    let mut prev_kw: [Option<u8>; 2] = [None, None];
    // What the last unquoted identifier was (the contextual keywords' rule reads it).
    let mut prev_word = Prev::Name;
    let mut in_by_list = false;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match t {
            &Tok::Word(ref range, kw) => {
                match kw {
                    Some(k) if !SPECIAL[usize::from(k)] => {}
                    None => {}
                    Some(k @ (IN | VALUES)) => {
                        let after = if k == IN {
                            const_list(sql, toks, i + 1, b'(', b')')
                        } else {
                            values_rows(sql, toks, i + 1)
                        };
                        if let Some(after) = after {
                            r.push(Last::Keyword, Next::Other, keywords::name(k));
                            r.push(Last::Close, Next::Other, "(...)");
                            i = after;
                            prev_kw = [None, Some(k)];
                            continue;
                        }
                    }
                    Some(ARRAY) => {
                        if let Some(after) = const_list(sql, toks, i + 1, b'[', b']') {
                            r.push(Last::Close, Next::Other, "ARRAY[...]");
                            i = after;
                            prev_kw = [None, Some(ARRAY)];
                            continue;
                        }
                    }
                    Some(NULL) if !matches!(prev_kw[1], Some(IS | NOT)) => {
                        r.placeholder();
                        prev_kw = [prev_kw[1], None];
                        i += 1;
                        continue;
                    }
                    Some(TRUE | FALSE)
                        if prev_kw[1] != Some(IS) && prev_kw != [Some(IS), Some(NOT)] =>
                    {
                        r.placeholder();
                        prev_kw = [prev_kw[1], None];
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                match kw {
                    None => {
                        let word = &sql.as_bytes()[range.clone()];
                        prev_word = super::more_keywords::classify(word, toks, i, prev_word);
                        let upper = matches!(prev_word, Prev::Keyword(_));
                        r.word_as(
                            range.clone(),
                            upper,
                            if upper { Last::Keyword } else { Last::Ident },
                        );
                    }
                    Some(_) => r.word(range.clone(), kw),
                }
                in_by_list = kw == Some(BY);
                prev_kw = [prev_kw[1], kw];
                i += 1;
                continue;
            }
            Tok::QuotedIdent(range) => {
                let text = &sql[range.clone()];
                let inner = text.strip_prefix('"').and_then(|s| s.strip_suffix('"'));
                match inner {
                    // `"users"` names the same relation as `users`.
                    Some(name)
                        if is_plain_lower_ident(name)
                            && super::keywords::keyword(name.as_bytes()).is_none() =>
                    {
                        if reserved(name) {
                            r.push(Last::Ident, Next::Other, text);
                            r.hidden.push((r.at() - text.len(), Hidden::Shown));
                            r.hidden.push((r.at() - 1, Hidden::Shown));
                        } else {
                            r.push(Last::Ident, Next::Other, name)
                        }
                    }
                    _ => r.push(Last::Ident, Next::Other, text),
                }
                in_by_list = false;
            }
            Tok::Const(start) => {
                let start = *start;
                let by_ordinal = in_by_list
                    && sql.as_bytes().get(start).is_some_and(u8::is_ascii_digit)
                    && matches!(
                        toks.get(i + 1),
                        None | Some(Tok::Punct(b',' | b')' | b';')) | Some(Tok::Word(..))
                    );
                if by_ordinal {
                    // `ORDER BY 2` names a column position, not a value: keep it.
                    let len = sql.as_bytes()[start..]
                        .iter()
                        .take_while(|b| b.is_ascii_digit())
                        .count();
                    r.push(Last::Value, Next::Other, &sql[start..start + len]);
                } else {
                    r.placeholder();
                }
            }
            Tok::Param => r.placeholder(),
            Tok::Op(range) => {
                let op = &sql[range.clone()];
                let sign_position = match toks[..i].last() {
                    None => true,
                    Some(Tok::Op(_) | Tok::Punct(b'(' | b'[' | b',' | b';') | Tok::Cast) => true,
                    Some(Tok::Word(_, Some(k))) => SIGN_CONTEXT[usize::from(*k)],
                    _ => false,
                };
                if (op == "-" || op == "+")
                    && sign_position
                    && matches!(toks.get(i + 1), Some(Tok::Const(p)) if is_numeric_at(sql, *p))
                {
                    // `-5` and `5` are the same constant slot.
                    i += 1;
                    continue;
                }
                r.push(Last::Op, Next::Other, op);
                in_by_list = false;
            }
            Tok::Punct(b) => {
                let (kind, next) = match b {
                    b'(' => (Last::Open, Next::Paren),
                    b'[' => (Last::Open, Next::Bracket),
                    b')' | b']' => (Last::Close, Next::Closing),
                    b',' | b';' => (Last::Sep, Next::Closing),
                    _ => (Last::Tight, Next::Closing), // `.` and `:`
                };
                r.space_before(next);
                r.out.push(*b);
                r.last = kind;
                if *b != b',' {
                    in_by_list = false;
                }
            }
            Tok::Cast => {
                r.push(Last::Tight, Next::Closing, "::");
                in_by_list = false;
            }
            Tok::Other(range) => {
                r.push(Last::Op, Next::Other, &sql[range.clone()]);
            }
        }
        prev_kw = [prev_kw[1], None];
        i += 1;
    }
    r.finish()
}

fn is_plain_lower_ident(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'$')
}
