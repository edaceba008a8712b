//! Size classes: the log2 bucket of the longest list an execution carries, so that
//! `= ANY($1)` with 5 ids and with 50 000 ids are planned (and compared) apart.

use std::fmt;

use crate::fingerprint::lexer::{Tok, tokenize};

/// The size class of one execution: the log2 bucket of the longest array bound to it (for
/// `= ANY($1)`) or of the longest `IN (…)` / `VALUES (…), (…)` list in its text.
///
/// Class 0 holds executions with no list (or a list of one); class `k` holds lists of
/// `2^(k-1)` to `2^k - 1` elements. Displayed as the range, e.g. `4–7` or `32768–65535`.
///
/// # Examples
/// ```
/// use pgscope::SizeClass;
/// assert_eq!(SizeClass::of_len(5).to_string(), "4–7");
/// assert_eq!(SizeClass::of_len(500), SizeClass::of_len(300));
/// assert_ne!(SizeClass::of_len(5), SizeClass::of_len(50_000));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SizeClass(u8);

impl SizeClass {
    /// The class of a list of `len` elements.
    pub fn of_len(len: usize) -> Self {
        if len <= 1 {
            SizeClass(0)
        } else {
            SizeClass((usize::BITS - len.leading_zeros()) as u8 - 1)
        }
    }

    /// The smallest list length in this class.
    pub fn min_len(self) -> usize {
        if self.0 == 0 { 0 } else { 1 << self.0 }
    }

    /// The largest list length in this class.
    pub fn max_len(self) -> usize {
        if self.0 == 0 {
            1
        } else {
            1usize
                .checked_shl(u32::from(self.0) + 1)
                .map_or(usize::MAX, |end| end - 1)
        }
    }

    /// The class of an execution: the longer of its longest bound array and its longest
    /// literal list.
    pub(crate) fn of_execution(sql: &str, arguments: Option<&str>) -> Self {
        let from_args = arguments.map_or(0, longest_array);
        SizeClass::of_len(from_args.max(longest_list(sql)))
    }
}

impl fmt::Display for SizeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("0–1")
        } else {
            write!(f, "{}–{}", self.min_len(), self.max_len())
        }
    }
}

/// The longest first dimension among the arrays in sqlx's `Debug` rendering of `PgArguments`.
/// sqlx keeps the encoded buffer private; its `Debug` lists the bytes: each argument is a
/// big-endian `i32` length (`-1` for NULL) and that many bytes, and an array in binary format
/// is `ndim, flags, element oid`, then `(length, lower bound)` per dimension, then each element
/// with its own length. An argument counts as an array only when all of that checks out to the
/// last byte, so nothing else is mistaken for one. Anything unexpected gives 0.
pub(crate) fn longest_array(debug: &str) -> usize {
    let Some(bytes) = buffer_bytes(debug) else {
        return 0;
    };
    let mut longest = 0;
    let mut at = 0;
    while let Some(len) = read_i32(&bytes, at) {
        at += 4;
        let Ok(len) = usize::try_from(len) else {
            continue; // NULL
        };
        let Some(value) = bytes.get(at..at + len) else {
            break;
        };
        if let Some(n) = array_len(value) {
            longest = longest.max(n);
        }
        at += len;
    }
    longest
}

fn buffer_bytes(debug: &str) -> Option<Vec<u8>> {
    let start = debug.find("PgArgumentBuffer { buffer: [")? + "PgArgumentBuffer { buffer: [".len();
    let end = start + debug[start..].find(']')?;
    let list = &debug[start..end];
    if list.trim().is_empty() {
        return Some(Vec::new());
    }
    list.split(',')
        .map(|b| b.trim().parse::<u8>().ok())
        .collect()
}

fn read_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let b = bytes.get(at..at + 4)?;
    Some(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The first dimension's length if `value` is a well-formed binary array.
fn array_len(value: &[u8]) -> Option<usize> {
    let ndim = read_i32(value, 0)?;
    let flags = read_i32(value, 4)?;
    if !(1..=6).contains(&ndim) || !(0..=1).contains(&flags) {
        return None;
    }
    let mut at = 12;
    let mut elements: usize = 1;
    let mut first = None;
    for _ in 0..ndim {
        let len = usize::try_from(read_i32(value, at)?).ok()?;
        read_i32(value, at + 4)?;
        first.get_or_insert(len);
        elements = elements.checked_mul(len)?;
        at += 8;
    }
    for _ in 0..elements {
        let len = read_i32(value, at)?;
        at += 4;
        if let Ok(len) = usize::try_from(len) {
            at = at.checked_add(len)?;
        }
    }
    (at == value.len()).then_some(first?)
}

/// The longest `IN (…)` list of constants or `VALUES` row list in `sql`.
pub(crate) fn longest_list(sql: &str) -> usize {
    let mut toks = Vec::new();
    tokenize(sql, &mut toks);
    let mut longest = 0;
    for (i, tok) in toks.iter().enumerate() {
        match tok.keyword() {
            Some("IN") if toks.get(i + 1) == Some(&Tok::Punct(b'(')) => {
                longest = longest.max(in_list_len(&toks[i + 2..]));
            }
            Some("VALUES") => longest = longest.max(values_rows(&toks[i + 1..])),
            _ => {}
        }
    }
    longest
}

/// Items of a constant list up to its closing parenthesis (0 for a subquery).
fn in_list_len(toks: &[Tok]) -> usize {
    let mut items = 1;
    for tok in toks {
        match tok {
            Tok::Punct(b',') => items += 1,
            Tok::Punct(b')') => return items,
            Tok::Const(_) | Tok::Param | Tok::Op(_) | Tok::Cast | Tok::Word(..) => {}
            _ => return 0,
        }
        if tok.keyword() == Some("SELECT") {
            return 0;
        }
    }
    0
}

/// Rows of a `VALUES (…), (…)` list.
fn values_rows(toks: &[Tok]) -> usize {
    let (mut rows, mut depth) = (0, 0usize);
    for tok in toks {
        match tok {
            Tok::Punct(b'(') => {
                if depth == 0 {
                    rows += 1;
                }
                depth += 1;
            }
            Tok::Punct(b')') => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => break,
            },
            Tok::Punct(b',') if depth == 0 => {}
            _ if depth == 0 => break,
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_log2_buckets() {
        assert_eq!(SizeClass::of_len(0), SizeClass::of_len(1));
        assert_eq!(SizeClass::of_len(2).to_string(), "2–3");
        assert_eq!(SizeClass::of_len(3), SizeClass::of_len(2));
        assert_eq!(SizeClass::of_len(4).to_string(), "4–7");
        assert_eq!(SizeClass::of_len(500).to_string(), "256–511");
        assert_eq!(SizeClass::of_len(50_000).to_string(), "32768–65535");
        assert_eq!(SizeClass::of_len(usize::MAX).max_len(), usize::MAX);
    }

    #[test]
    fn literal_lists_are_measured_in_the_text() {
        assert_eq!(longest_list("SELECT * FROM t WHERE id IN (1, 2, 3)"), 3);
        assert_eq!(
            longest_list("SELECT * FROM t WHERE id IN ($1, $2) AND x IN (1)"),
            2
        );
        assert_eq!(
            longest_list("SELECT * FROM t WHERE id IN (SELECT id FROM u)"),
            0
        );
        assert_eq!(
            longest_list("INSERT INTO t (a, b) VALUES (1, (2)), (3, 4), ($1, $2)"),
            3
        );
        assert_eq!(longest_list("SELECT 1"), 0);
        assert_eq!(longest_list("SELECT * FROM t WHERE id IN ("), 0);
    }

    fn debug_of(args: &[Option<Vec<u8>>]) -> String {
        let mut bytes = Vec::new();
        for a in args {
            match a {
                Some(v) => {
                    bytes.extend((v.len() as i32).to_be_bytes());
                    bytes.extend(v);
                }
                None => bytes.extend((-1i32).to_be_bytes()),
            }
        }
        let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
        format!(
            "PgArguments {{ types: [], buffer: PgArgumentBuffer {{ buffer: [{}], count: {} }} }}",
            list.join(", "),
            args.len()
        )
    }

    fn int8_array(n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(1i32.to_be_bytes());
        v.extend(0i32.to_be_bytes());
        v.extend(20u32.to_be_bytes());
        v.extend((n as i32).to_be_bytes());
        v.extend(1i32.to_be_bytes());
        for i in 0..n {
            v.extend(8i32.to_be_bytes());
            v.extend((i as i64).to_be_bytes());
        }
        v
    }

    #[test]
    fn arrays_are_found_among_the_arguments() {
        let args = [
            Some(7i64.to_be_bytes().to_vec()),
            None,
            Some(int8_array(12)),
            Some(int8_array(3)),
        ];
        assert_eq!(longest_array(&debug_of(&args)), 12);
        // A text value that happens to start like an array header but does not add up.
        let mut fake = int8_array(2);
        fake.push(0);
        assert_eq!(longest_array(&debug_of(&[Some(fake)])), 0);
        assert_eq!(longest_array("garbage"), 0);
        assert_eq!(longest_array(&debug_of(&[])), 0);
    }

    #[test]
    fn real_sqlx_arguments_are_read() {
        use sqlx::Arguments;
        let mut args = sqlx::postgres::PgArguments::default();
        args.add(vec![1i64; 40]).expect("encode");
        args.add("text").expect("encode");
        args.add(Option::<i32>::None).expect("encode");
        assert_eq!(longest_array(&format!("{args:?}")), 40);
        let class =
            SizeClass::of_execution("SELECT 1 WHERE 1 IN (1, 2)", Some(&format!("{args:?}")));
        assert_eq!(class, SizeClass::of_len(40));
    }
}
