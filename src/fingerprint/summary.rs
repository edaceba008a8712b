//! `db.query.summary`: operations and the tables they touch, from the token stream.

use super::lexer::Tok;

/// Builds `db.query.summary`: operations and the tables they touch, in query order
/// (`SELECT posts users`, `INSERT orders SELECT carts`), at most 255 bytes, never cut inside a
/// name. Only keywords and identifiers are used, so no literal can appear in it.
pub(crate) fn summary(sql: &str, toks: &[Tok]) -> String {
    const MAX: usize = 255;
    let mut out = String::new();
    let push = |out: &mut String, part: &str| {
        let extra = part.len() + usize::from(!out.is_empty());
        if out.len() + extra <= MAX {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(part);
        }
    };
    let mut expect_target = false;
    let mut in_from_list = false;
    let mut first = true;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        let kw = t.keyword();
        if first {
            first = false;
            if let Some(k) = kw {
                match k {
                    "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE" | "WITH" | "VALUES" => {}
                    "CREATE" | "ALTER" | "DROP" | "TRUNCATE" => {
                        // `CREATE TABLE t`, `DROP INDEX i`: the command with its object kind.
                        let mut j = i + 1;
                        let mut cmd = String::from(k);
                        while let Some(k2) = toks.get(j).and_then(|t| t.keyword()) {
                            if matches!(k2, "IF" | "NOT" | "EXISTS" | "ONLY") {
                                j += 1;
                                continue;
                            }
                            cmd.push(' ');
                            cmd.push_str(k2);
                            j += 1;
                            if matches!(k2, "TABLE" | "INDEX" | "VIEW") {
                                break;
                            }
                        }
                        while matches!(
                            toks.get(j).and_then(|t| t.keyword()),
                            Some("IF" | "NOT" | "EXISTS")
                        ) {
                            j += 1;
                        }
                        push(&mut out, &cmd);
                        i = j;
                        expect_target = true;
                        continue;
                    }
                    other => {
                        push(&mut out, other);
                        i += 1;
                        continue;
                    }
                }
            } else if let Tok::Word(r, _) = t {
                // Non-keyword command (e.g. `vacuum`-like words we do not list): upper-cased.
                push(&mut out, &sql[r.clone()].to_ascii_uppercase());
                i += 1;
                continue;
            }
        }
        match (t, kw) {
            (_, Some(op @ ("SELECT" | "INSERT" | "UPDATE" | "DELETE" | "MERGE"))) => {
                push(&mut out, op);
                in_from_list = false;
                expect_target = op == "UPDATE";
            }
            (_, Some("FROM" | "JOIN" | "INTO" | "USING")) => {
                expect_target = true;
                in_from_list = kw == Some("FROM");
            }
            (_, Some("ONLY" | "LATERAL")) => {}
            (Tok::Word(..) | Tok::QuotedIdent(_), None) if expect_target => {
                let (name, next) = qualified_name(sql, toks, i);
                push(&mut out, &name);
                expect_target = false;
                i = next;
                continue;
            }
            (Tok::Punct(b','), _) if in_from_list => expect_target = true,
            (Tok::Punct(b'(' | b')'), _) => {
                expect_target = false;
                in_from_list = false;
            }
            (_, Some(_)) => {
                expect_target = false;
                if kw != Some("AS") {
                    in_from_list = false;
                }
            }
            _ => expect_target = false,
        }
        i += 1;
    }
    out
}

/// `schema.table` or `"Quoted"."Name"` as written (quotes kept, unquoted parts lower-cased).
fn qualified_name(sql: &str, toks: &[Tok], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    loop {
        match toks.get(i) {
            Some(Tok::Word(r, _)) => name.push_str(&sql[r.clone()].to_ascii_lowercase()),
            Some(Tok::QuotedIdent(r)) => name.push_str(&sql[r.clone()]),
            _ => break,
        }
        i += 1;
        if toks.get(i) == Some(&Tok::Punct(b'.'))
            && matches!(toks.get(i + 1), Some(Tok::Word(..) | Tok::QuotedIdent(_)))
        {
            name.push('.');
            i += 1;
        } else {
            break;
        }
    }
    (name, i)
}
