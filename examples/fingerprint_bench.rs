//! Fingerprinting speed: cached lookups and cold fingerprinting of short, typical and large SQL.
//!
//! ```text
//! cargo run --release --example fingerprint_bench
//! ```
//! Targets: cached < 100 ns per lookup; cold ≥ 200 MB/s of SQL text.

use std::hint::black_box;
use std::time::{Duration, Instant};

fn short() -> String {
    "SELECT * FROM users WHERE id = 42 AND active".to_owned() // ~45 B
}

fn typical() -> String {
    "SELECT p.id, p.title, p.created_at, u.id AS author_id, u.name, u.avatar_url, count(c.id) AS comments \
     FROM posts p JOIN users u ON u.id = p.author_id LEFT JOIN comments c ON c.post_id = p.id \
     WHERE p.published = true AND p.created_at > '2024-01-01' AND u.country = 'NL' \
     GROUP BY p.id, u.id ORDER BY p.created_at DESC LIMIT 20 OFFSET 40"
        .to_owned()
}

fn large() -> String {
    let mut s = String::from("INSERT INTO events (id, kind, payload, created_at) VALUES ");
    let mut i = 0;
    while s.len() < 20_000 {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            "({i}, 'click', '{{\"x\": {i}, \"y\": \"abc\"}}', '2024-05-01 12:00:00')"
        ));
        i += 1;
    }
    s.push_str(" ON CONFLICT (id) DO NOTHING");
    s
}

/// Runs `f` repeatedly for about `budget`, returns nanoseconds per call (best of 5 batches).
fn measure(budget: Duration, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < budget / 5 {
            for _ in 0..64 {
                f();
            }
            n += 64;
        }
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

fn main() {
    let budget = Duration::from_millis(1500);
    let statements = [
        ("short", short()),
        ("typical", typical()),
        ("large", large()),
    ];
    let cache = pgscope::FingerprintCache::new(10_000);
    println!(
        "| statement | bytes | cached ns/lookup | cold ns/statement | cold MB/s | cold + summary ns | cold + summary MB/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, sql) in &statements {
        cache.get(sql);
        let cached = measure(budget, || {
            black_box(cache.get(black_box(sql)));
        });
        let cold = measure(budget, || {
            black_box(pgscope::fingerprint(black_box(sql)));
        });
        // The summary (db.query.summary) is computed on first use; the pool's cold path asks
        // for it (N+1 rules look at the operation), so show that cost too.
        let with_summary = measure(budget, || {
            let fp = pgscope::fingerprint(black_box(sql));
            black_box(fp.summary().len());
        });
        let mbps = |ns: f64| sql.len() as f64 / ns * 1e9 / 1e6;
        println!(
            "| {name} | {} | {cached:.0} | {cold:.0} | {:.0} | {with_summary:.0} | {:.0} |",
            sql.len(),
            mbps(cold),
            mbps(with_summary)
        );
    }
}
