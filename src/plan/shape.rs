//! Plan shapes: the stable part of an `EXPLAIN (FORMAT JSON)` tree.

use std::fmt;

use serde_json::Value;

/// The shape of a plan: node types, join types, relation and index names, and the tree they
/// form, without costs or row counts, e.g.
/// `Hash Join(Seq Scan users, Index Scan posts_author_idx)`. Two plans are equal when their
/// shapes are; the top node's estimates are kept beside it for display.
///
/// # Examples
/// ```no_run
/// # async fn t(pool: pgscope::Pool) -> Result<(), sqlx::Error> {
/// let ids: Vec<i64> = (1..=500).collect();
/// let shape = pgscope::explain(&pool, sqlx::query("SELECT * FROM tasks WHERE project_id = ANY($1)").bind(ids)).await?;
/// println!("{shape}"); // e.g. `Bitmap Heap Scan tasks(Bitmap Index Scan tasks_project_id_idx)`
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PlanShape {
    signature: String,
    rows: f64,
    cost: f64,
}

impl PlanShape {
    /// The signature, as displayed.
    pub fn signature(&self) -> &str {
        &self.signature
    }

    /// The top node's estimated rows.
    pub fn estimated_rows(&self) -> f64 {
        self.rows
    }

    /// The top node's estimated total cost.
    pub fn estimated_cost(&self) -> f64 {
        self.cost
    }

    /// Reads the output of `EXPLAIN (FORMAT JSON)`: `[{"Plan": {…}}]`.
    pub(crate) fn from_explain_json(json: &str) -> Result<PlanShape, String> {
        let value: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let plan = value
            .get(0)
            .and_then(|v| v.get("Plan"))
            .ok_or_else(|| "no `Plan` in the EXPLAIN output".to_owned())?;
        let mut signature = String::new();
        write_node(plan, &mut signature, 0)?;
        Ok(PlanShape {
            signature,
            rows: plan.get("Plan Rows").and_then(Value::as_f64).unwrap_or(0.0),
            cost: plan
                .get("Total Cost")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
        })
    }
}

impl PartialEq for PlanShape {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for PlanShape {}

impl fmt::Display for PlanShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.signature)
    }
}

/// Plans deeper than this are cut (`…`): shapes stay short and recursion bounded.
const MAX_DEPTH: usize = 32;

fn write_node(node: &Value, out: &mut String, depth: usize) -> Result<(), String> {
    if depth == MAX_DEPTH {
        out.push('…');
        return Ok(());
    }
    let text = |key: &str| node.get(key).and_then(Value::as_str);
    let node_type =
        text("Node Type").ok_or_else(|| "a plan node without `Node Type`".to_owned())?;
    if node.get("Parallel Aware").and_then(Value::as_bool) == Some(true) {
        out.push_str("Parallel ");
    }
    match (node_type, text("Strategy"), text("Join Type")) {
        // As EXPLAIN's text format names them.
        ("Aggregate", Some("Hashed"), _) => out.push_str("HashAggregate"),
        ("Aggregate", Some("Sorted"), _) => out.push_str("GroupAggregate"),
        ("Aggregate", Some("Mixed"), _) => out.push_str("MixedAggregate"),
        (join, _, Some(kind)) if kind != "Inner" => match join.strip_suffix(" Join") {
            Some(method) => {
                out.push_str(method);
                out.push(' ');
                out.push_str(kind);
                out.push_str(" Join");
            }
            None => {
                out.push_str(join);
                out.push(' ');
                out.push_str(kind);
                out.push_str(" Join");
            }
        },
        (other, ..) => out.push_str(other),
    }
    let target = text("Index Name")
        .or_else(|| text("Relation Name"))
        .or_else(|| text("CTE Name"))
        .or_else(|| text("Function Name"));
    if let Some(target) = target {
        out.push(' ');
        out.push_str(target);
    }
    if let Some(children) = node.get("Plans").and_then(Value::as_array) {
        out.push('(');
        for (i, child) in children.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_node(child, out, depth + 1)?;
        }
        out.push(')');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_join_plan_reads_as_its_tree_without_costs() {
        let json = r#"[{"Plan": {"Node Type": "Hash Join", "Join Type": "Inner",
            "Total Cost": 42.5, "Plan Rows": 10, "Plans": [
              {"Node Type": "Seq Scan", "Relation Name": "users", "Alias": "u", "Total Cost": 1},
              {"Node Type": "Hash", "Plans": [
                {"Node Type": "Index Scan", "Index Name": "posts_author_idx",
                 "Relation Name": "posts", "Total Cost": 3}]}]}}]"#;
        let shape = PlanShape::from_explain_json(json).expect("shape");
        assert_eq!(
            shape.to_string(),
            "Hash Join(Seq Scan users, Hash(Index Scan posts_author_idx))"
        );
        assert_eq!(shape.estimated_rows(), 10.0);
        assert_eq!(shape.estimated_cost(), 42.5);
    }

    #[test]
    fn join_types_strategies_and_parallelism_are_named_as_explain_names_them() {
        let json = r#"[{"Plan": {"Node Type": "Nested Loop", "Join Type": "Left", "Plans": [
            {"Node Type": "Aggregate", "Strategy": "Hashed", "Plans": [
              {"Node Type": "Seq Scan", "Parallel Aware": true, "Relation Name": "t"}]},
            {"Node Type": "Hash Join", "Join Type": "Anti"}]}}]"#;
        let shape = PlanShape::from_explain_json(json).expect("shape");
        assert_eq!(
            shape.signature(),
            "Nested Loop Left Join(HashAggregate(Parallel Seq Scan t), Hash Anti Join)"
        );
    }

    #[test]
    fn equal_shapes_with_different_costs_are_equal() {
        let a = PlanShape::from_explain_json(
            r#"[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 1}}]"#,
        );
        let b = PlanShape::from_explain_json(
            r#"[{"Plan": {"Node Type": "Seq Scan", "Relation Name": "t", "Total Cost": 9}}]"#,
        );
        assert_eq!(a.expect("a"), b.expect("b"));
    }

    #[test]
    fn malformed_output_is_an_error_not_a_panic() {
        for bad in [
            "",
            "[]",
            "{}",
            "[{\"Plan\": {}}]",
            "[{\"Plan\": 3}]",
            "not json",
        ] {
            assert!(PlanShape::from_explain_json(bad).is_err(), "{bad}");
        }
    }
}
