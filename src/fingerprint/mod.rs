//! SQL fingerprints: normalized text, a stable 64-bit id and a low-cardinality summary.
//!
//! # Algorithm (stable across runs, platforms and crate versions)
//!
//! 1. The statement is tokenized the way PostgreSQL's own lexer reads it (string constants in all
//!    their forms, dollar quotes, nested comments, operators, quoted identifiers).
//! 2. The tokens are rendered back as text: every constant and every `$n` parameter becomes a
//!    placeholder numbered `$1, $2, …` in order of appearance; `IN (…)`, `VALUES (…), (…)` and
//!    `ARRAY[…]` made only of constants collapse to `(...)` / `[...]`; a sign in front of a
//!    number is part of the constant; `TRUE`, `FALSE` and `NULL` used as values are constants
//!    (`IS NULL`, `IS NOT TRUE`, `NOT NULL` stay); keywords are upper-cased, unquoted
//!    identifiers lower-cased, `"quoted"` identifiers keep their case (and lose their quotes
//!    only when that changes nothing); comments, whitespace and trailing `;` disappear.
//! 3. The id is XXH3-64 (seed 0) of the UTF-8 bytes of that normalized text, with one
//!    difference the text does not show: the quotes kept around reserved words (`"user"`) are
//!    left out (so the id is that of `user`).
//!
//! **A fingerprint identifies the statement's shape**: any literal, of any type, and any `$n`
//! in the same place are the same placeholder. `WHERE amount > 3.14` from a log and
//! `WHERE amount > $1` bound by sqlx get one id; two statements with the same id show the same
//! text in reports, and the same text always has the same id.
//!
//! # Differences from `pg_stat_statements`
//! pgscope groups statements the way `pg_stat_statements` does, except that pgscope does not
//! split statements by the type of a constant, nor a constant from a bound parameter
//! (PostgreSQL's `queryid` follows the parse tree, where `42` is an integer, `0.5` a numeric and
//! `$1` a parameter node). Statements that differ only in the length of a constant list share a
//! fingerprint (the list collapses), where `pg_stat_statements` gives each length its own
//! `queryid`. A literal and a
//! bind parameter in the same position also share one (`WHERE id = 42` and `WHERE id = $1`),
//! so code that interpolates and code that binds are grouped together for N+1 detection.
//! `= ANY($1)` and `IN ($1, $2)` stay different: they are different plan shapes. Column and table
//! aliases, and `*` versus the same columns spelled out, are part of the text and so of the
//! fingerprint, where `pg_stat_statements` (which jumbles the analyzed tree) ignores them.
//! `tests/fingerprint_vs_pg_stat_statements.rs` checks agreement on a corpus of 171 statements.

mod cache;
mod effects;
mod keywords;
pub(crate) mod lexer;
mod more_keywords;
mod normalize;
mod summary;

use std::fmt;
use std::sync::Arc;

pub use self::cache::FingerprintCache;
pub(crate) use self::cache::HashKeyed;
pub(crate) use self::effects::Effects;

/// The fingerprint of one SQL statement: which statement "shape" it is, independent of values.
///
/// Cheap to clone (a reference-counted pointer).
///
/// # Examples
/// ```
/// let a = pgscope::fingerprint("SELECT * FROM users WHERE id = 42");
/// let b = pgscope::fingerprint("select *  from USERS where id = $1 -- by id");
/// assert_eq!(a.id(), b.id());
/// assert_eq!(a.normalized(), "SELECT * FROM users WHERE id = $1");
/// assert_eq!(a.summary(), "SELECT users");
/// assert_eq!(format!("{:016x}", a.id()).len(), 16);
/// ```
#[derive(Clone)]
pub struct Fingerprint(Arc<Inner>);

struct Inner {
    id: u64,
    // `String`, not `Box<str>`: shrinking would cost a reallocation and a copy per statement.
    normalized: String,
    operation: &'static str,
    /// Computed on first use from the normalized text (which keeps every keyword and name the
    /// summary needs): applications that never ask for it do not pay for it.
    summary: std::sync::OnceLock<String>,
    /// What running it may do (see [`Effects`]): computed on first use, like the summary.
    effects: std::sync::OnceLock<Effects>,
}

impl Fingerprint {
    /// The stable 64-bit id: XXH3-64 of [`normalized`](Self::normalized) (see the module docs
    /// for the two differences the text does not show).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The normalized statement text, with `$n` placeholders where the input had values.
    pub fn normalized(&self) -> &str {
        &self.0.normalized
    }

    /// The low-cardinality summary (OpenTelemetry `db.query.summary`), e.g. `SELECT users`.
    pub fn summary(&self) -> &str {
        self.0.summary.get_or_init(|| {
            with_tokens(&self.0.normalized, |toks| {
                summary::summary(&self.0.normalized, toks)
            })
        })
    }

    /// What running the statement may do: whether its repeats read the same rows, and whether
    /// it may change what other statements read.
    pub(crate) fn effects(&self) -> Effects {
        *self.0.effects.get_or_init(|| {
            with_tokens(&self.0.normalized, |toks| {
                effects::effects(&self.0.normalized, toks)
            })
        })
    }

    /// The id as 16 lower-case hex digits, as used in logs and span attributes.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0.id)
    }

    /// The statement's operation (`SELECT`, `INSERT`, `BEGIN`, …; empty when unknown): its first
    /// keyword when that is a command, else its first `SELECT`/`INSERT`/`UPDATE`/`DELETE`/`MERGE`.
    pub fn operation(&self) -> &str {
        self.0.operation
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Fingerprint {}

impl std::hash::Hash for Fingerprint {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fingerprint")
            .field("id", &format_args!("{:016x}", self.0.id))
            .field("normalized", &self.0.normalized)
            .field("summary", &self.summary())
            .finish()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x} {}", self.0.id, self.0.normalized)
    }
}

/// Fingerprints one SQL statement (or a `;`-separated batch, which gets one fingerprint).
///
/// Never fails and never panics: malformed SQL (unterminated quotes or comments, stray bytes)
/// still gets a fingerprint, and its normalized text still contains no literal value.
/// Runs in time linear in the input. [`Pool`](crate::Pool) caches the result per SQL text, so
/// this full computation happens once per distinct statement text.
///
/// # Examples
/// ```
/// let a = pgscope::fingerprint("SELECT * FROM posts WHERE author_id IN (1, 2, 3)");
/// let b = pgscope::fingerprint("SELECT * FROM posts WHERE author_id IN ($1)");
/// assert_eq!(a, b);
/// assert_eq!(a.normalized(), "SELECT * FROM posts WHERE author_id IN (...)");
/// ```
pub fn fingerprint(sql: &str) -> Fingerprint {
    with_tokens(sql, |toks| {
        let (normalized, id) = normalize::normalize(sql, toks);
        let operation = normalize::operation(toks);
        Fingerprint(Arc::new(Inner {
            id,
            normalized,
            operation,
            summary: std::sync::OnceLock::new(),
            effects: std::sync::OnceLock::new(),
        }))
    })
}

/// Like [`fingerprint`], for tools that fingerprint millions of statements: writes the
/// normalized text into `out` (replacing what it held, reusing its memory) and returns the id,
/// with no allocation once `out` has grown to size. [`fingerprint_append`] writes into a byte
/// buffer, such as a tool's output, without the copy.
///
/// # Examples
/// ```
/// let mut text = String::new();
/// for sql in ["SELECT 1", "select 2"] {
///     let id = pgscope::fingerprint_to(sql, &mut text);
///     assert_eq!(text, "SELECT $1");
///     assert_eq!(id, pgscope::fingerprint(sql).id());
/// }
/// ```
pub fn fingerprint_to(sql: &str, out: &mut String) -> u64 {
    let mut text = std::mem::take(out).into_bytes();
    text.clear();
    let id = fingerprint_append(sql, &mut text);
    *out = normalize::utf8(text);
    id
}

/// Like [`fingerprint_to`], appending the normalized text to a byte buffer (after what it
/// holds) and returning the id: what the `pgscope` CLI renders a log file with, each
/// statement's text going straight into the output block. The bytes appended are UTF-8.
///
/// # Examples
/// ```
/// let mut out = Vec::new();
/// for sql in ["SELECT 1", "select * from t where a in (1, 2)"] {
///     let id = pgscope::fingerprint_append(sql, &mut out);
///     assert_eq!(id, pgscope::fingerprint(sql).id());
///     out.push(b'\n');
/// }
/// assert_eq!(out, b"SELECT $1\nSELECT * FROM t WHERE a IN (...)\n");
/// ```
pub fn fingerprint_append(sql: &str, out: &mut Vec<u8>) -> u64 {
    with_tokens(sql, |toks| normalize::normalize_into(sql, toks, out))
}

/// Tokenizes `sql` into a reused per-thread buffer (saving an allocation per statement) and
/// runs `f` on the tokens.
fn with_tokens<R>(sql: &str, f: impl FnOnce(&[lexer::Tok]) -> R) -> R {
    thread_local! {
        static TOKENS: std::cell::RefCell<Vec<lexer::Tok>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let run = |toks: &mut Vec<lexer::Tok>| {
        toks.clear();
        lexer::tokenize(sql, toks);
        f(toks)
    };
    TOKENS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut toks) => {
            let out = run(&mut toks);
            // Do not keep the memory of one huge statement around for the thread's lifetime.
            if toks.capacity() > 16 * 1024 {
                *toks = Vec::new();
            }
            out
        }
        Err(_) => run(&mut Vec::new()),
    })
}

#[cfg(test)]
mod tests;
