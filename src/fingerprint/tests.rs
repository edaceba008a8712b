use super::fingerprint;

/// Asserts `a` and `b` share a fingerprint (text and id) when `expected`, else share neither.
fn check(a: &str, b: &str, expected: bool) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let what = if expected { "same" } else { "different" };
    assert_eq!(
        fa.normalized() == fb.normalized(),
        expected,
        "expected {what} fingerprints:\n  {a}\n  {b}"
    );
    assert_eq!(fa.id() == fb.id(), expected, "ids: {a} / {b}");
}

fn same(a: &str, b: &str) {
    check(a, b, true);
}

fn differ(a: &str, b: &str) {
    check(a, b, false);
}

#[test]
fn literals_of_every_kind_are_placeholders() {
    let base = "SELECT * FROM t WHERE a = $1";
    for v in [
        "42",
        "0x1F",
        "1_000",
        "'x'",
        "'it''s'",
        "E'a\\'b'",
        "U&'d\\0061t'",
        "B'1010'",
        "X'1F'",
        "N'text'",
        "$$dollar$$",
        "$tag$ with 'quotes' $tag$",
        "$7",
        "TRUE",
        "false",
        "NULL",
        "-5",
        "- 5",
        "+5",
    ] {
        same(base, &format!("SELECT * FROM t WHERE a = {v}"));
    }
    // Numbers with a fraction or exponent are the same shape too (PostgreSQL types them
    // numeric and splits them; a fingerprint does not).
    for v in ["0.1", "4.2", "4.2e10", ".5", "-7.25"] {
        same(base, &format!("SELECT * FROM t WHERE a = {v}"));
    }
}

#[test]
fn whitespace_comments_and_keyword_case_are_ignored() {
    same(
        "SELECT a FROM t WHERE b = 1",
        "select  a\n\tfrom T -- comment\n where /* x /* nested */ y */ B = 2",
    );
    same("SELECT 1", "SELECT 1;");
    same(
        "SELECT \"users\".id FROM users",
        "SELECT users.id FROM \"users\"",
    );
}

#[test]
fn lists_collapse_regardless_of_length() {
    same(
        "SELECT * FROM t WHERE id IN (1)",
        "SELECT * FROM t WHERE id IN (1, 2, 3, 4)",
    );
    same(
        "SELECT * FROM t WHERE id IN ($1, $2)",
        "SELECT * FROM t WHERE id IN ('a', 'b', 'c')",
    );
    same(
        "INSERT INTO t (a, b) VALUES (1, 2)",
        "INSERT INTO t (a, b) VALUES (1, 2), (3, 4), ($1, $2)",
    );
    same("SELECT ARRAY[1, 2]", "SELECT ARRAY[3]");
    same(
        "SELECT * FROM t WHERE id IN (1::int, 2::int)",
        "SELECT * FROM t WHERE id IN ($1::int)",
    );
    assert_eq!(
        fingerprint("SELECT * FROM t WHERE id NOT IN (1,2)").normalized(),
        "SELECT * FROM t WHERE id NOT IN (...)"
    );
}

#[test]
fn typed_literals_keep_their_type() {
    same("SELECT DATE '2024-01-01'", "SELECT DATE '1999-12-31'");
    same("SELECT 'x'::text", "SELECT 'yy'::text");
    differ("SELECT 'x'::text", "SELECT 'x'::varchar");
    differ("SELECT DATE '2024-01-01'", "SELECT TIMESTAMP '2024-01-01'");
    assert_eq!(
        fingerprint("SELECT 'x'::text").normalized(),
        "SELECT $1::text"
    );
}

#[test]
fn structure_identifiers_and_operators_make_different_fingerprints() {
    differ(
        "SELECT * FROM t WHERE id = ANY($1)",
        "SELECT * FROM t WHERE id IN ($1, $2)",
    );
    differ("SELECT * FROM users", "SELECT * FROM \"Users\"");
    differ("SELECT a FROM t", "SELECT b FROM t");
    differ("SELECT a, b FROM t", "SELECT a FROM t");
    differ("SELECT * FROM t WHERE a = 1", "SELECT * FROM t WHERE a > 1");
    differ("SELECT * FROM t", "SELECT * FROM t LIMIT 10");
    differ(
        "SELECT * FROM t ORDER BY a ASC",
        "SELECT * FROM t ORDER BY a DESC",
    );
    differ("SELECT * FROM t ORDER BY 1", "SELECT * FROM t ORDER BY 2");
    differ("SELECT a - 5 FROM t", "SELECT a + 5 FROM t");
    differ(
        "SELECT * FROM t WHERE a IS NULL",
        "SELECT * FROM t WHERE a IS NOT NULL",
    );
    differ(
        "SELECT * FROM t WHERE a IS TRUE",
        "SELECT * FROM t WHERE a IS NOT TRUE",
    );
    differ(
        "SELECT * FROM t WHERE a IS NULL",
        "SELECT * FROM t WHERE a = NULL",
    );
    differ(
        "SELECT * FROM t WHERE id IN (SELECT id FROM u)",
        "SELECT * FROM t WHERE id IN (1)",
    );
    differ("SELECT -$1", "SELECT $1");
}

#[test]
fn quoted_identifiers_keep_case_and_unquoted_fold() {
    same("SELECT * FROM Users", "SELECT * FROM users");
    differ("SELECT * FROM \"Users\"", "SELECT * FROM users");
    assert_eq!(
        fingerprint("SELECT \"Name\" FROM \"Users\"").normalized(),
        "SELECT \"Name\" FROM \"Users\""
    );
}

#[test]
fn multi_statement_strings_get_one_fingerprint() {
    let fp = fingerprint("BEGIN; UPDATE accounts SET balance = balance - 10 WHERE id = 7; COMMIT");
    assert_eq!(
        fp.normalized(),
        "BEGIN; UPDATE accounts SET balance = balance - $1 WHERE id = $2; COMMIT"
    );
    same(
        "BEGIN; UPDATE a SET b = 1; COMMIT",
        "begin;update a set b=2;commit;",
    );
}

#[test]
fn normalized_text_reads_naturally() {
    let cases = [
        (
            "SELECT * FROM users WHERE id = 42",
            "SELECT * FROM users WHERE id = $1",
        ),
        (
            "select count(*) from posts where author_id=$1 and created_at > now() - interval '1 day'",
            "SELECT count(*) FROM posts WHERE author_id = $1 AND created_at > now() - INTERVAL $2",
        ),
        (
            "SELECT p.id, u.name FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ANY($1)",
            "SELECT p.id, u.name FROM posts p JOIN users u ON u.id = p.author_id WHERE p.id = ANY($1)",
        ),
        (
            "INSERT INTO t(a,b) VALUES (1,'x') RETURNING id",
            "INSERT INTO t(a, b) VALUES (...) RETURNING id",
        ),
        (
            "SELECT a[1], b::int[] FROM t",
            "SELECT a[$1], b::int[] FROM t",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(fingerprint(input).normalized(), want, "input: {input}");
    }
}

#[test]
fn summaries_name_operations_and_tables() {
    let cases = [
        ("SELECT * FROM users WHERE id = 1", "SELECT users"),
        (
            "SELECT * FROM posts p JOIN users u ON u.id = p.author_id",
            "SELECT posts users",
        ),
        ("SELECT * FROM a, b WHERE a.x = b.x", "SELECT a b"),
        (
            "INSERT INTO shipping_details SELECT * FROM orders",
            "INSERT shipping_details SELECT orders",
        ),
        (
            "SELECT * FROM (SELECT * FROM orders) o JOIN customers c ON true",
            "SELECT SELECT orders customers",
        ),
        ("UPDATE accounts SET x = 1", "UPDATE accounts"),
        (
            "DELETE FROM public.sessions WHERE id = 1",
            "DELETE public.sessions",
        ),
        ("SELECT * FROM \"song list\"", "SELECT \"song list\""),
        ("BEGIN", "BEGIN"),
        (
            "CREATE TABLE IF NOT EXISTS foo (id int)",
            "CREATE TABLE foo",
        ),
        ("SELECT 1", "SELECT"),
    ];
    for (input, want) in cases {
        assert_eq!(fingerprint(input).summary(), want, "input: {input}");
    }
}

#[test]
fn malformed_input_never_leaks_literals() {
    for sql in [
        "SELECT 'unterminated secret",
        "SELECT $$secret never closed",
        "SELECT E'secret\\' still open",
        "SELECT * FROM t WHERE a = 'secret' /* open comment",
        "SELECT \"open ident",
        "SELECT 12345 secret67890",
        "\u{1}\u{2}SELECT 'secret'",
        "",
        ";;;",
        "$",
        "'",
    ] {
        let fp = fingerprint(sql);
        assert!(
            !fp.normalized().contains("secret'"),
            "{sql:?} -> {}",
            fp.normalized()
        );
        assert!(
            !fp.normalized().contains("12345"),
            "{sql:?} -> {}",
            fp.normalized()
        );
        assert!(
            !fp.normalized().contains("67890") || sql.contains("secret67890"),
            "{sql:?}"
        );
    }
}

#[test]
fn huge_and_deep_inputs_finish() {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let sql = format!("SELECT * FROM t WHERE id IN ({})", list.join(", "));
    assert_eq!(
        fingerprint(&sql).normalized(),
        "SELECT * FROM t WHERE id IN (...)"
    );
    let deep = format!("SELECT {}1{}", "(".repeat(50_000), ")".repeat(50_000));
    assert!(fingerprint(&deep).normalized().starts_with("SELECT (((("));
    let big = "SELECT 'x' || 'y' FROM t WHERE a = 1 AND ".repeat(25_000);
    assert!(big.len() > 1_000_000);
    assert!(!fingerprint(&big).normalized().contains('\''));
}

#[test]
fn operation_is_the_first_word_of_the_summary() {
    for sql in [
        "SELECT * FROM users",
        "WITH t AS (SELECT 1) SELECT * FROM t",
        "INSERT INTO t SELECT * FROM u",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "BEGIN",
        "CREATE TABLE foo (id int)",
        "VALUES (1)",
        "",
        "unknownword 1",
    ] {
        let fp = fingerprint(sql);
        let first = fp.summary().split(' ').next().unwrap_or("");
        if !fp.operation().is_empty() {
            assert_eq!(fp.operation(), first, "{sql}");
        }
    }
    assert_eq!(
        fingerprint("WITH t AS (SELECT 1) SELECT * FROM t").operation(),
        "SELECT"
    );
    assert_eq!(fingerprint("BEGIN").operation(), "BEGIN");
}

#[test]
fn quoted_reserved_words_keep_their_quotes_in_the_text_but_not_in_the_id() {
    let quoted = fingerprint(r#"SELECT "user".name FROM "user" WHERE "user".id = 7"#);
    assert_eq!(
        quoted.normalized(),
        r#"SELECT "user".name FROM "user" WHERE "user".id = $1"#,
        "unquoted it would read as the `user` keyword"
    );
    // Grouping is unchanged: the id is that of the text without the display-only quotes.
    assert_eq!(
        quoted.id(),
        xxhash_rust::xxh3::xxh3_64(b"SELECT user.name FROM user WHERE user.id = $1")
    );
    // Identifiers that need no quotes still lose them.
    assert_eq!(
        fingerprint(r#"SELECT * FROM "users""#).normalized(),
        "SELECT * FROM users"
    );
    // Case-sensitive names keep their quotes and their identity, as before.
    assert_ne!(
        fingerprint(r#"SELECT * FROM "User""#).id(),
        fingerprint("SELECT * FROM user").id()
    );
}

#[test]
fn a_constant_of_any_type_and_a_parameter_are_the_same_shape() {
    let int = fingerprint("SELECT * FROM posts WHERE score > 42");
    let numeric = fingerprint("SELECT * FROM posts WHERE score > 0.001");
    assert_eq!(int.normalized(), numeric.normalized());
    assert_eq!(
        int.id(),
        numeric.id(),
        "one shape, whatever PostgreSQL types them"
    );
    // The id is the hash of the text shown: a statement from a log matches the bound one.
    assert_eq!(
        int.id(),
        xxhash_rust::xxh3::xxh3_64(int.normalized().as_bytes())
    );
    assert_eq!(
        fingerprint("SELECT id FROM orders WHERE amount > 3.14").id(),
        fingerprint("SELECT id FROM orders WHERE amount > $1").id()
    );
    assert_eq!(
        fingerprint("SELECT id FROM orders WHERE amount > 1e10").id(),
        fingerprint("SELECT id FROM orders WHERE amount > $1").id()
    );
    assert_eq!(
        fingerprint("SELECT 96241").id(),
        fingerprint("SELECT 'x'").id()
    );
    for same_kind in [
        "SELECT * FROM posts WHERE score > 7.5",
        "SELECT * FROM posts WHERE score > 1e3",
        "SELECT * FROM posts WHERE score > -.25",
    ] {
        assert_eq!(fingerprint(same_kind).id(), numeric.id(), "{same_kind}");
    }
    assert_eq!(
        fingerprint("SELECT * FROM posts WHERE score > 9").id(),
        int.id()
    );
    // A `$n` parameter still shares the integer's fingerprint (documented).
    assert_eq!(
        fingerprint("SELECT * FROM posts WHERE score > $1").id(),
        int.id()
    );
}

#[test]
fn every_postgres_keyword_keeps_keyword_case_where_it_acts_as_one() {
    for (sql, expected) in [
        (
            "lock table subscriptions in access exclusive mode",
            "LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE",
        ),
        (
            "LOCK t IN share row exclusive MODE",
            "LOCK t IN SHARE ROW EXCLUSIVE MODE",
        ),
        (
            "begin isolation level serializable",
            "BEGIN ISOLATION LEVEL SERIALIZABLE",
        ),
        (
            "set transaction isolation level read committed",
            "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        ),
        (
            "insert into t (a) values (1) on conflict (a) do nothing",
            "INSERT INTO t(a) VALUES (...) ON CONFLICT (a) DO NOTHING",
        ),
        (
            "select created_at at time zone 'UTC' from t",
            "SELECT created_at AT TIME ZONE $1 FROM t",
        ),
        ("vacuum verbose analyze t", "VACUUM VERBOSE ANALYZE t"),
        (
            "create index concurrently i on t (a)",
            "CREATE INDEX CONCURRENTLY i ON t(a)",
        ),
        (
            "select * from unnest($1) with ordinality as t(id, n)",
            "SELECT * FROM unnest($1) WITH ORDINALITY AS t(id, n)",
        ),
        ("select session_user, user", "SELECT SESSION_USER, USER"),
        (
            "alter table t add column c int",
            "ALTER TABLE t ADD COLUMN c int",
        ),
    ] {
        assert_eq!(fingerprint(sql).normalized(), expected, "{sql}");
    }
}

#[test]
fn keywords_that_name_columns_stay_identifiers() {
    for (sql, expected) in [
        (
            "SELECT Name, TYPE, value FROM t WHERE data = $1 ORDER BY level",
            "SELECT name, type, value FROM t WHERE data = $1 ORDER BY level",
        ),
        (
            "INSERT INTO log (level, message, position) VALUES ($1, $2, $3)",
            "INSERT INTO log(level, message, position) VALUES (...)",
        ),
        (
            "UPDATE t SET name = $1, version = version + 1 WHERE t.owner = $2",
            "UPDATE t SET name = $1, version = version + $2 WHERE t.owner = $3",
        ),
        (
            "select position('a' in name), x::name from events data",
            "SELECT position($1 IN name), x::name FROM events data",
        ),
        (
            "create table t (id bigserial primary key, name text not null, type varchar(20))",
            "CREATE TABLE t(id bigserial PRIMARY KEY, name text NOT NULL, type varchar($1))",
        ),
        (
            "select id as name from t group by name having name is null",
            "SELECT id AS name FROM t GROUP BY name HAVING name IS NULL",
        ),
    ] {
        assert_eq!(fingerprint(sql).normalized(), expected, "{sql}");
    }
    // The normalized text is stable: fingerprinting it again gives it back.
    for sql in [
        "LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE",
        "SELECT name, type FROM t WHERE data = $1",
    ] {
        let once = fingerprint(sql);
        assert_eq!(
            fingerprint(once.normalized()).normalized(),
            once.normalized()
        );
        assert_eq!(fingerprint(once.normalized()).id(), once.id());
    }
}
