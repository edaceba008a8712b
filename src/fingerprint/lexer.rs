//! A PostgreSQL-aware lexer that never fails: every byte of input ends up in exactly one token
//! (or in a skipped comment or whitespace run), so malformed SQL still produces a token stream.
//!
//! The rules follow PostgreSQL's `scan.l` closely enough that two statements PostgreSQL would
//! read as the same tokens are read the same way here: string constants in all their prefixed
//! forms, dollar quoting, nested block comments, the operator rule about trailing `+`/`-`.

use std::ops::Range;

/// One lexical token; ranges index the original input and always fall on UTF-8 boundaries
/// because every token boundary is an ASCII byte or the end of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Unquoted word: an identifier, or a keyword (its index in the keyword table, looked up
    /// once here; one byte keeps a token at 24 bytes).
    Word(Range<usize>, Option<u8>),
    /// `"quoted identifier"` including its quotes (case-sensitive).
    QuotedIdent(Range<usize>),
    /// Any literal value (numbers, strings of every form, dollar-quoted bodies, bit strings),
    /// with the offset of its first byte.
    Const(usize),
    /// `$n` positional parameter.
    Param,
    /// Operator made of PostgreSQL operator characters.
    Op(Range<usize>),
    /// Single punctuation byte: `( ) [ ] , ; . :`
    Punct(u8),
    /// `::` cast operator.
    Cast,
    /// Any byte PostgreSQL would reject; kept so that malformed input stays distinguishable.
    Other(Range<usize>),
}

impl Tok {
    /// The keyword this token is, if it is one.
    pub(crate) fn keyword(&self) -> Option<&'static str> {
        match self {
            Tok::Word(_, kw) => kw.map(super::keywords::name),
            _ => None,
        }
    }
}

fn is_ident_start(b: u8) -> bool {
    IDENT_START[usize::from(b)]
}

/// Bytes that start an unquoted word, as a table: tested on every token.
static IDENT_START: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphabetic() || c == b'_' || c >= 0x80;
        b += 1;
    }
    t
};

/// Bytes that continue an unquoted word, as a table: the word loop is the lexer's hottest.
static IDENT_CONT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80;
        b += 1;
    }
    t
};

fn is_ident_cont(b: u8) -> bool {
    IDENT_CONT[usize::from(b)]
}

fn is_op_char(b: u8) -> bool {
    matches!(
        b,
        b'+' | b'-'
            | b'*'
            | b'/'
            | b'<'
            | b'>'
            | b'='
            | b'~'
            | b'!'
            | b'@'
            | b'#'
            | b'%'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
    )
}

/// Splits `sql` into tokens, skipping whitespace and comments.
pub(crate) fn tokenize(sql: &str, out: &mut Vec<Tok>) {
    let s = sql.as_bytes();
    let n = s.len();
    let mut i = 0;
    while i < n {
        let mut b = s[i];
        // Most tokens are followed by one space: step over it here rather than in a turn of
        // its own through the dispatch below, whose indirect jump is the lexer's costliest
        // misprediction.
        if b == b' ' {
            i += 1;
            match s.get(i) {
                Some(&next) => b = next,
                None => break,
            }
        }
        // Words are every other token: their test comes before the dispatch (a prefixed
        // string such as `E'…'` starts like a word, and `lex_word` tells them apart).
        if is_ident_start(b) {
            i = lex_word(s, i, out);
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                i += 1;
                while i < n && matches!(s[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
                    i += 1;
                }
            }
            b'-' if s.get(i + 1) == Some(&b'-') => i = skip_line_comment(s, i),
            b'/' if s.get(i + 1) == Some(&b'*') => i = skip_block_comment(s, i),
            b'\'' => {
                out.push(Tok::Const(i));
                i = skip_string(s, i + 1, false);
            }
            b'"' => {
                let end = skip_quoted_ident(s, i + 1);
                out.push(Tok::QuotedIdent(i..end));
                i = end;
            }
            b'$' => i = lex_dollar(s, i, out),
            b'0'..=b'9' => {
                out.push(Tok::Const(i));
                i = skip_number(s, i);
            }
            b'.' if s.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push(Tok::Const(i));
                i = skip_number(s, i);
            }
            b':' if s.get(i + 1) == Some(&b':') => {
                out.push(Tok::Cast);
                i += 2;
            }
            b'(' | b')' | b'[' | b']' | b',' | b';' | b'.' | b':' => {
                out.push(Tok::Punct(b));
                i += 1;
            }
            _ if is_op_char(b) => i = lex_operator(s, i, out),
            _ => {
                // Control bytes and `{ } \` have no meaning in PostgreSQL SQL; keep them visible.
                out.push(Tok::Other(i..i + 1));
                i += 1;
            }
        }
    }
}

fn skip_line_comment(s: &[u8], i: usize) -> usize {
    memchr::memchr2(b'\n', b'\r', &s[i..]).map_or(s.len(), |p| i + p)
}

/// Block comments nest in PostgreSQL; an unterminated one runs to the end of input.
fn skip_block_comment(s: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < s.len() {
        if s[i] == b'/' && s.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if s[i] == b'*' && s.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    s.len()
}

/// Skips a single-quoted body starting after the opening quote. `''` is an escaped quote;
/// with `backslash` (E'' strings) `\'` is too. Adjacent strings separated only by whitespace
/// containing a newline continue the same constant, as in the SQL standard.
fn skip_string(s: &[u8], mut i: usize, backslash: bool) -> usize {
    loop {
        while i < s.len() {
            // Jump straight to the next byte that can end or escape the string.
            let next = if backslash {
                memchr::memchr2(b'\'', b'\\', &s[i..])
            } else {
                find_quote(&s[i..])
            };
            let Some(p) = next else {
                i = s.len();
                break;
            };
            i += p;
            match s[i] {
                b'\\' => i += 2,
                _ if s.get(i + 1) == Some(&b'\'') => i += 2,
                _ => break,
            }
        }
        if i >= s.len() {
            return s.len();
        }
        i += 1; // closing quote
        let mut j = i;
        let mut newline = false;
        while j < s.len() && matches!(s[j], b' ' | b'\t' | b'\n' | b'\r' | 0x0c) {
            newline |= matches!(s[j], b'\n' | b'\r');
            j += 1;
        }
        if newline && s.get(j) == Some(&b'\'') {
            i = j + 1;
        } else {
            return i;
        }
    }
}

/// The first `'` in `s`. Most string constants are short (`'click'`, `'2024-05-01'`): their
/// end is found in the first eight or sixteen bytes, cheaper than a vector search's setup;
/// longer ones go to `memchr`.
fn find_quote(s: &[u8]) -> Option<usize> {
    const QUOTES: u64 = ONES * b'\'' as u64;
    for (k, chunk) in s.chunks_exact(8).take(2).enumerate() {
        let x = u64::from_le_bytes(chunk.try_into().unwrap_or_default()) ^ QUOTES;
        // The lowest zero byte of `x` is flagged exactly (flags above it may be false).
        let zero = x.wrapping_sub(ONES) & !x & HIGH;
        if zero != 0 {
            return Some(8 * k + (zero.trailing_zeros() / 8) as usize);
        }
    }
    let from = (s.len() / 8).min(2) * 8;
    memchr::memchr(b'\'', &s[from..]).map(|p| from + p)
}

fn skip_quoted_ident(s: &[u8], mut i: usize) -> usize {
    while i < s.len() {
        if s[i] == b'"' {
            if s.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    s.len()
}

fn skip_number(s: &[u8], mut i: usize) -> usize {
    let n = s.len();
    if s[i] == b'0' && matches!(s.get(i + 1), Some(b'x' | b'X' | b'o' | b'O' | b'b' | b'B')) {
        i += 2;
        while i < n && (s[i].is_ascii_hexdigit() || s[i] == b'_') {
            i += 1;
        }
        return i;
    }
    while i < n && (s[i].is_ascii_digit() || s[i] == b'_') {
        i += 1;
    }
    // A `..` after digits is not a decimal point (kept for robustness with odd input).
    if i < n && s[i] == b'.' && s.get(i + 1) != Some(&b'.') {
        i += 1;
        while i < n && (s[i].is_ascii_digit() || s[i] == b'_') {
            i += 1;
        }
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        let mut j = i + 1;
        if j < n && (s[j] == b'+' || s[j] == b'-') {
            j += 1;
        }
        if j < n && s[j].is_ascii_digit() {
            i = j;
            while i < n && s[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    i
}

/// `$1` parameters and `$tag$ ... $tag$` dollar quotes; a lone `$` is an unknown byte.
fn lex_dollar(s: &[u8], i: usize, out: &mut Vec<Tok>) -> usize {
    let n = s.len();
    let mut j = i + 1;
    if j < n && s[j].is_ascii_digit() {
        while j < n && s[j].is_ascii_digit() {
            j += 1;
        }
        out.push(Tok::Param);
        return j;
    }
    // Dollar-quote tag: `$` [ident-start ident-cont-without-$]* `$`
    if j < n && is_ident_start(s[j]) {
        while j < n && (is_ident_start(s[j]) || s[j].is_ascii_digit()) {
            j += 1;
        }
    }
    if j < n && s[j] == b'$' {
        let tag = &s[i..=j];
        let body = j + 1;
        let end = find(&s[body..], tag).map_or(n, |p| body + p + tag.len());
        out.push(Tok::Const(i));
        return end;
    }
    out.push(Tok::Other(i..i + 1));
    i + 1
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut k = 0;
    while k + needle.len() <= hay.len() {
        match hay[k..].iter().position(|&b| b == first) {
            Some(p) => {
                k += p;
                if hay[k..].starts_with(needle) {
                    return Some(k);
                }
                k += 1;
            }
            None => return None,
        }
    }
    None
}

fn lex_operator(s: &[u8], i: usize, out: &mut Vec<Tok>) -> usize {
    let n = s.len();
    let mut j = i;
    while j < n && is_op_char(s[j]) {
        // A comment start ends the operator, as in PostgreSQL.
        if j > i
            && ((s[j] == b'-' && s.get(j + 1) == Some(&b'-'))
                || (s[j] == b'/' && s.get(j + 1) == Some(&b'*')))
        {
            break;
        }
        j += 1;
    }
    // PostgreSQL: a multi-character operator cannot end in `+` or `-` unless it also contains
    // one of `~ ! @ # % ^ & | \` ?`, so `=-5` is `=` followed by `-5`.
    if j - i > 1 {
        let has_special = s[i..j].iter().any(|b| {
            matches!(
                b,
                b'~' | b'!' | b'@' | b'#' | b'%' | b'^' | b'&' | b'|' | b'`' | b'?'
            )
        });
        if !has_special {
            while j - i > 1 && matches!(s[j - 1], b'+' | b'-') {
                j -= 1;
            }
        }
    }
    out.push(Tok::Op(i..j));
    j
}

#[inline(always)]
fn lex_word(s: &[u8], i: usize, out: &mut Vec<Tok>) -> usize {
    // Prefixed string constants: E'..', B'..', X'..', N'..', U&'..' and U&"..." identifiers.
    // Both start with a letter and a quote or `&`: one test of the second byte for both.
    match s.get(i + 1) {
        Some(b'\'') => match s[i] {
            b'e' | b'E' => {
                out.push(Tok::Const(i));
                return skip_string(s, i + 2, true);
            }
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' => {
                out.push(Tok::Const(i));
                return skip_string(s, i + 2, false);
            }
            _ => {}
        },
        Some(b'&') if matches!(s[i], b'u' | b'U') => match s.get(i + 2) {
            Some(b'\'') => {
                out.push(Tok::Const(i));
                return skip_string(s, i + 3, false);
            }
            Some(b'"') => {
                let end = skip_quoted_ident(s, i + 3);
                out.push(Tok::QuotedIdent(i..end));
                return end;
            }
            _ => {}
        },
        _ => {}
    }
    let (j, head, tail) = scan_word(s, i);
    out.push(Tok::Word(
        i..j,
        super::keywords::keyword_index_with(&s[i..j], head, tail),
    ));
    j
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The ASCII bytes of `x` (eight at once) from `lo` to `hi`, as their high bits. The range test
/// adds a per-byte offset to the low seven bits, which cannot carry into the next byte.
pub(super) const fn within8(x: u64, lo: u8, hi: u8) -> u64 {
    let low = x & !HIGH;
    let at_least = low + ONES * (0x80 - lo as u64);
    let above = low + ONES * (0x7F - hi as u64);
    at_least & !above & !x & HIGH
}

/// The bytes of `x` (eight at once) that continue an unquoted word, as their high bits: letters,
/// digits, `_`, `$` and bytes ≥ 0x80, like [`IDENT_CONT`].
const fn word_bytes(x: u64) -> u64 {
    let letters = within8(x | (ONES * 0x20), b'a', b'z');
    let digits = within8(x, b'0', b'9');
    let underscore = within8(x, b'_', b'_');
    let dollar = within8(x, b'$', b'$');
    letters | digits | underscore | dollar | (x & HIGH)
}

/// The end of the word starting at `s[i]` (an identifier-start byte), and its keyword
/// [`head`](super::keywords::head) and [`tail`](super::keywords::tail). Eight bytes at a time:
/// most words end inside their first eight bytes, so the loop exits on its first,
/// well-predicted turn instead of after a data-dependent number of byte steps, and head and
/// tail come from the loads that found the end.
#[inline(always)]
fn scan_word(s: &[u8], i: usize) -> (usize, u64, u64) {
    use super::keywords::{fold8, head, tail};
    let mut j = i;
    let mut first = None;
    while let Some(chunk) = s.get(j..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let stop = !word_bytes(x) & HIGH;
        if stop != 0 {
            let end = j + (stop.trailing_zeros() / 8) as usize;
            let Some(head) = first else {
                let len = end - i;
                return (end, fold8(x) & ((1u64 << (8 * len)) - 1), 0);
            };
            // A word of more than eight bytes: its last eight, masked to 0 when it has exactly
            // eight (no branch on which).
            let last = s[end - 8..end]
                .first_chunk::<8>()
                .map_or(0, |c| u64::from_le_bytes(*c));
            let longer = 0u64.wrapping_sub(u64::from(end - i > 8));
            return (end, head, fold8(last) & longer);
        }
        first.get_or_insert(fold8(x));
        j += 8;
    }
    while j < s.len() && is_ident_cont(s[j]) {
        j += 1;
    }
    let word = &s[i..j];
    (j, first.unwrap_or_else(|| head(word)), tail(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_byte_word_scan_agrees_with_the_byte_table() {
        for b in 0..=255u8 {
            let x = u64::from_le_bytes([b, b'a', 0, b'Z', b, b'_', 0xff, b]);
            let mask = word_bytes(x);
            for (k, &byte) in x.to_le_bytes().iter().enumerate() {
                assert_eq!(
                    mask >> (8 * k + 7) & 1 == 1,
                    is_ident_cont(byte),
                    "{byte:#x}"
                );
            }
        }
        for word in [
            "a",
            "ab",
            "select",
            "selected",
            "created_at",
            "CURRENT_TIMESTAMP",
            "author_id",
            "ninechars",
            "exactly8",
            "sixteen_chars_xx",
            "é_x",
        ] {
            for tail in ["", " ", "(", "x"] {
                let sql = format!("{word}{tail} ");
                let (end, head, tail) = scan_word(sql.as_bytes(), 0);
                let expect = sql.bytes().take_while(|&b| is_ident_cont(b)).count();
                assert_eq!(end, expect, "{sql:?}");
                let word = &sql.as_bytes()[..end];
                assert_eq!(head, super::super::keywords::head(word), "{sql:?}");
                assert_eq!(tail, super::super::keywords::tail(word), "{sql:?}");
            }
        }
    }

    fn toks(sql: &str) -> Vec<Tok> {
        let mut v = Vec::new();
        tokenize(sql, &mut v);
        v
    }

    #[test]
    fn quote_search_agrees_with_memchr() {
        for len in 0..40 {
            for at in 0..=len {
                let mut s = vec![b'a'; len];
                if at < len {
                    s[at] = b'\'';
                }
                if at + 3 < len {
                    s[at + 3] = b'\'';
                }
                assert_eq!(find_quote(&s), memchr::memchr(b'\'', &s), "{len} {at}");
            }
        }
    }

    #[test]
    fn operator_does_not_swallow_unary_minus() {
        assert_eq!(
            toks("a=-5"),
            vec![
                Tok::Word(0..1, None),
                Tok::Op(1..2),
                Tok::Op(2..3),
                Tok::Const(3)
            ]
        );
    }

    #[test]
    fn nested_comments_and_dollar_quotes_are_skipped() {
        assert_eq!(toks("/* a /* b */ c */ $x$ it's $x$"), vec![Tok::Const(18)]);
        assert_eq!(toks("$$ unterminated"), vec![Tok::Const(0)]);
    }

    #[test]
    fn prefixed_strings_are_constants() {
        assert_eq!(
            toks(r"E'a\'b' B'101' X'ff' U&'x'"),
            vec![Tok::Const(0), Tok::Const(8), Tok::Const(15), Tok::Const(21)]
        );
    }
}
