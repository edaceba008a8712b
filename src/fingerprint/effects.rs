//! What running a statement may do besides returning rows: whether repeating it with the same
//! parameters is certain to return the same rows (a duplicate worth reusing), and whether it may
//! change what other statements read.

use super::lexer::Tok;

/// What a statement may do to the database, or read from outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effects {
    /// A plain read: repeated with the same parameters and no write between, it returns the
    /// same rows.
    Read,
    /// A read whose result may change from one execution to the next though nothing was
    /// written: a locking read (`FOR UPDATE … SKIP LOCKED` claims a new row each time) or a call
    /// of a volatile function (`now()`, `random()`). Never a duplicate; changes nothing others
    /// read.
    Volatile,
    /// A statement that may change data: `INSERT`, `UPDATE`, `DELETE`, `MERGE`, DDL, `CALL`, a
    /// sequence or advisory-lock function, or a call of a function pgscope cannot see into.
    /// Reads repeated around it may return something else.
    Write,
}

/// Functions that change state outside the statement's rows (sequences, locks, notifications):
/// a statement calling one is a write.
const SIDE_EFFECT_FUNCTIONS: &[&str] = &[
    "lo_create",
    "lo_import",
    "lo_unlink",
    "nextval",
    "pg_notify",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "set_config",
    "setval",
];

/// Prefixes of function families with side effects (`pg_advisory_lock`, `pg_try_advisory_…`).
const SIDE_EFFECT_PREFIXES: &[&str] = &["pg_advisory", "pg_try_advisory"];

/// Volatile functions without side effects: the result differs from call to call.
const VOLATILE_FUNCTIONS: &[&str] = &[
    "clock_timestamp",
    "currval",
    "gen_random_uuid",
    "lastval",
    "now",
    "pg_sleep",
    "random",
    "random_normal",
    "statement_timestamp",
    "timeofday",
    "transaction_timestamp",
    "txid_current",
    "pg_current_xact_id",
    "uuid_generate_v1",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
];

/// Built-in functions (and type-named casts) that only compute from their arguments or the
/// rows: calling them keeps a read a read. Any other function call may write (a user's
/// `process_order($1)`), so it is treated as one.
const PURE_FUNCTIONS: &[&str] = &[
    "abs",
    "age",
    "array_agg",
    "array_append",
    "array_cat",
    "array_length",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_to_json",
    "array_to_string",
    "avg",
    "bit_and",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "date_bin",
    "date_part",
    "date_trunc",
    "decode",
    "dense_rank",
    "encode",
    "every",
    "exp",
    "first_value",
    "floor",
    "format",
    "generate_series",
    "generate_subscripts",
    "initcap",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_extract_path",
    "json_extract_path_text",
    "json_object_agg",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_object_agg",
    "jsonb_path_query",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_typeof",
    "justify_interval",
    "lag",
    "last_value",
    "lead",
    "left",
    "length",
    "ln",
    "log",
    "lower",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_timestamp",
    "make_timestamptz",
    "max",
    "md5",
    "min",
    "mod",
    "nth_value",
    "ntile",
    "octet_length",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_column_size",
    "pg_relation_size",
    "pg_total_relation_size",
    "plainto_tsquery",
    "power",
    "rank",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "sha256",
    "sign",
    "split_part",
    "sqrt",
    "starts_with",
    "stddev",
    "string_agg",
    "string_to_array",
    "strpos",
    "substr",
    "sum",
    "to_char",
    "to_date",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "translate",
    "trunc",
    "ts_rank",
    "unnest",
    "upper",
    "variance",
    "websearch_to_tsquery",
];

/// The effects of a normalized statement, tokenized as `toks` (`sql` is the text they index).
pub(crate) fn effects(sql: &str, toks: &[Tok]) -> Effects {
    let word = |t: &Tok| match t {
        Tok::Word(r, _) | Tok::QuotedIdent(r) => Some(&sql[r.clone()]),
        _ => None,
    };
    let first = toks.first().and_then(Tok::keyword);
    // Commands that are not queries (DDL, CALL, DO, COPY, SET, …) may change anything. Only
    // `SELECT`, `WITH`, `VALUES`, `TABLE`, `SHOW` and `EXPLAIN` (without ANALYZE) start reads.
    match first {
        Some("SELECT" | "WITH" | "VALUES" | "TABLE" | "SHOW") => {}
        Some("EXPLAIN") if !toks.iter().any(|t| t.keyword() == Some("ANALYZE")) => {
            return Effects::Read;
        }
        _ => return Effects::Write,
    }
    let mut effects = Effects::Read;
    for (i, t) in toks.iter().enumerate() {
        let before = |back: usize| i.checked_sub(back).and_then(|j| toks[j].keyword());
        match t.keyword() {
            Some("INSERT" | "DELETE" | "MERGE" | "TRUNCATE") => return Effects::Write,
            // `FOR UPDATE`, `FOR NO KEY UPDATE`: a locking read; any other UPDATE writes
            // (`WITH moved AS (UPDATE …)`).
            Some("UPDATE") => {
                if before(1) == Some("FOR") || before(1) == Some("KEY") {
                    effects = Effects::Volatile;
                } else {
                    return Effects::Write;
                }
            }
            // `FOR SHARE`, `FOR KEY SHARE`; the clock, read anew by each statement.
            Some("SHARE") if before(1) == Some("FOR") || before(1) == Some("KEY") => {
                effects = Effects::Volatile;
            }
            Some("CURRENT_TIMESTAMP" | "CURRENT_TIME" | "LOCALTIMESTAMP" | "LOCALTIME") => {
                effects = Effects::Volatile;
            }
            _ => {}
        }
        // A function call: a name followed by `(`, not a type after `::` nor a keyword
        // (`IN (`, `AS (`, `OVER (`, `COALESCE(`).
        if toks.get(i + 1) != Some(&Tok::Punct(b'(')) || t.keyword().is_some() {
            continue;
        }
        let Some(name) = word(t) else { continue };
        if i > 0 && toks[i - 1] == Tok::Cast {
            continue;
        }
        // `pg_catalog.now()`: judged by the last part of the name.
        let name = name.trim_matches('"').to_ascii_lowercase();
        if SIDE_EFFECT_FUNCTIONS.contains(&name.as_str())
            || SIDE_EFFECT_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            return Effects::Write;
        }
        if VOLATILE_FUNCTIONS.contains(&name.as_str()) {
            effects = Effects::Volatile;
        } else if !PURE_FUNCTIONS.contains(&name.as_str()) && !is_type_name(&name) {
            // A function pgscope cannot see into (a user's, an extension's).
            return Effects::Write;
        }
    }
    effects
}

/// Type names that take a modifier in parentheses (`varchar(20)`, `numeric(10, 2)` after a
/// `CAST(x AS …)`).
fn is_type_name(name: &str) -> bool {
    matches!(
        name,
        "varchar" | "char" | "character" | "numeric" | "decimal" | "bit" | "varbit" | "interval"
    ) || name.starts_with("timestamp")
        || name.starts_with("time")
}

#[cfg(test)]
mod tests {
    use super::Effects::{self, *};

    fn of(sql: &str) -> Effects {
        crate::fingerprint(sql).effects()
    }

    #[test]
    fn plain_reads_are_reads() {
        for sql in [
            "SELECT name FROM users WHERE id = $1",
            "select count(*), max(created_at) from posts where author_id = $1",
            "WITH recent AS (SELECT * FROM posts ORDER BY id DESC LIMIT 5) SELECT * FROM recent",
            "SELECT coalesce(bio, '') FROM \"user\" WHERE username = $1",
            "SELECT CAST(price AS numeric(10, 2)) FROM items WHERE id IN (1, 2)",
            "SELECT $1::varchar(20)",
            "SELECT 1",
            "SELECT EXISTS (SELECT 1 FROM t WHERE a = $1)",
            "SELECT json_agg(row_to_json(t)) FROM t",
        ] {
            assert_eq!(of(sql), Read, "{sql}");
        }
    }

    #[test]
    fn locking_reads_and_volatile_calls_are_volatile() {
        for sql in [
            "SELECT id FROM issue_delivery_queue FOR UPDATE SKIP LOCKED LIMIT $1",
            "SELECT * FROM jobs WHERE state = 'new' FOR NO KEY UPDATE NOWAIT",
            "SELECT * FROM t FOR SHARE",
            "SELECT * FROM t FOR KEY SHARE OF t SKIP LOCKED",
            "SELECT now()",
            "SELECT random() * 10",
            "SELECT gen_random_uuid()",
            "SELECT pg_catalog.now()",
            "SELECT CURRENT_TIMESTAMP",
        ] {
            assert_eq!(of(sql), Volatile, "{sql}");
        }
    }

    #[test]
    fn writes_and_opaque_calls_are_writes() {
        for sql in [
            "INSERT INTO t (a) VALUES ($1)",
            "UPDATE t SET a = $1 WHERE id = $2",
            "DELETE FROM issue_delivery_queue WHERE id = $1",
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "WITH moved AS (DELETE FROM a RETURNING *) SELECT * FROM moved",
            "WITH u AS (UPDATE t SET a = 1 RETURNING id) SELECT id FROM u",
            "SELECT nextval('orders_id_seq')",
            "SELECT pg_advisory_xact_lock($1)",
            "SELECT pg_try_advisory_lock(42)",
            "SELECT process_order($1)",
            "SELECT * FROM my_schema.claim_batch($1)",
            "CALL refresh()",
            "CREATE TABLE t (a int)",
            "TRUNCATE t",
            "EXPLAIN ANALYZE DELETE FROM t",
        ] {
            assert_eq!(of(sql), Write, "{sql}");
        }
    }
}
