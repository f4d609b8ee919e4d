//! AWS IoT-style rule statements: `SELECT temp, humidity FROM 'devices/+/telemetry' WHERE temp > -50`.
//!
//! The `FROM` clause names the topic filter (captures allowed); the select
//! list picks and renames payload values or computes new ones; `WHERE`
//! drops readings that fail the condition. Functions: `topic()` (the whole
//! topic), `topic(n)` (its n-th level, from 1), `clientid()`, `timestamp()`
//! (server time in ms).

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, SelectItem, SetExpr, Statement, TableFactor,
    UnaryOperator,
};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::json::Scalar;

/// Where a reading came from, for the functions a statement may call.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The topic the message was published to.
    pub topic: &'a str,
    /// The publisher's client id ("" if unknown).
    pub client_id: &'a str,
    /// Server time, nanoseconds since the epoch.
    pub now_ns: i64,
}

#[derive(Debug, Clone)]
enum Item {
    /// `*`: every value of the payload.
    All,
    /// An expression and the name it is stored under.
    Expr(Box<Expr>, String),
}

/// A parsed rule statement.
#[derive(Debug, Clone)]
pub struct SelectRule {
    topic: String,
    items: Vec<Item>,
    filter: Option<Expr>,
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Num(f64),
    Bool(bool),
    Str(String),
    /// A payload number, kept exact until arithmetic touches it.
    Exact(serde_json::Number),
}

impl Val {
    fn num(&self) -> Option<f64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Exact(n) => n.as_f64(),
            _ => None,
        }
    }
}

const PLACEHOLDER: &str = "__telemark_topic__";

impl SelectRule {
    /// Parses a statement; errors say which part is not supported.
    pub fn parse(sql: &str) -> Result<SelectRule, String> {
        let (topic, text) = extract_topic(sql)?;
        let statements =
            Parser::parse_sql(&GenericDialect {}, &text).map_err(|e| format!("rule statement `{sql}`: {e}"))?;
        let [Statement::Query(query)] = statements.as_slice() else {
            return Err(format!("rule statement `{sql}`: expected one SELECT statement"));
        };
        let SetExpr::Select(select) = query.body.as_ref() else {
            return Err(format!("rule statement `{sql}`: expected a plain SELECT"));
        };
        let unsupported = query.order_by.is_some()
            || query.limit_clause.is_some()
            || select.distinct.is_some()
            || select.having.is_some()
            || !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty());
        if unsupported {
            return Err(format!(
                "rule statement `{sql}`: only SELECT … FROM 'topic' [WHERE …] is supported (no GROUP BY, ORDER BY, LIMIT, DISTINCT)"
            ));
        }
        let from_ok = matches!(select.from.as_slice(), [t] if t.joins.is_empty()
            && matches!(&t.relation, TableFactor::Table { name, .. } if name.to_string() == PLACEHOLDER));
        if !from_ok {
            return Err(format!("rule statement `{sql}`: FROM must name one topic filter in single quotes"));
        }
        let mut items = Vec::new();
        for item in &select.projection {
            items.push(match item {
                SelectItem::Wildcard(_) => Item::All,
                SelectItem::UnnamedExpr(e) => Item::Expr(Box::new(e.clone()), default_name(e)),
                SelectItem::ExprWithAlias { expr, alias } => Item::Expr(Box::new(expr.clone()), alias.value.clone()),
                other => return Err(format!("rule statement `{sql}`: unsupported select item `{other}`")),
            });
        }
        let rule = SelectRule { topic, items, filter: select.selection.clone() };
        // Evaluate once on an empty reading so unsupported expressions fail at startup, not per message.
        let origin = Origin { topic: "a", client_id: "", now_ns: 0 };
        for item in &rule.items {
            if let Item::Expr(e, _) = item {
                eval(e, &[], &origin).map_err(|m| format!("rule statement `{sql}`: {m}"))?;
            }
        }
        if let Some(f) = &rule.filter {
            eval(f, &[], &origin).map_err(|m| format!("rule statement `{sql}`: {m}"))?;
        }
        Ok(rule)
    }

    /// The topic filter or template of the `FROM` clause.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Applies the statement to one reading's values: `Ok(None)` if `WHERE`
    /// drops it, else the selected `(name, value)` pairs.
    pub fn apply(
        &self,
        values: &[(String, Scalar)],
        origin: &Origin<'_>,
    ) -> Result<Option<Vec<(String, Scalar)>>, String> {
        if let Some(f) = &self.filter {
            match eval(f, values, origin)? {
                Val::Bool(true) => {}
                Val::Bool(false) | Val::Null => return Ok(None),
                other => return Err(format!("WHERE gave {other:?}, expected true or false")),
            }
        }
        let mut out = Vec::new();
        for item in &self.items {
            match item {
                Item::All => out.extend(values.iter().cloned()),
                Item::Expr(e, name) => {
                    let v = match eval(e, values, origin)? {
                        Val::Null => continue,
                        Val::Num(n) => match serde_json::Number::from_f64(n) {
                            Some(n) => Scalar::Number(n),
                            None => return Err(format!("`{name}` evaluated to {n}, which cannot be stored")),
                        },
                        Val::Exact(n) => Scalar::Number(n),
                        Val::Bool(b) => Scalar::Bool(b),
                        Val::Str(s) => Scalar::Str(s),
                    };
                    out.push((name.clone(), v));
                }
            }
        }
        Ok(Some(out))
    }
}

/// Pulls the single-quoted topic after FROM out of the text, leaving a placeholder name.
fn extract_topic(sql: &str) -> Result<(String, String), String> {
    let upper = sql.to_ascii_uppercase();
    let mut search = 0;
    while let Some(pos) = upper.get(search..).and_then(|s| s.find("FROM")).map(|p| p + search) {
        let after = sql.get(pos + 4..).unwrap_or("");
        let trimmed = after.trim_start();
        let boundary_before =
            pos == 0 || !sql.as_bytes().get(pos - 1).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if boundary_before && after.len() > trimmed.len() && trimmed.starts_with('\'') {
            let start = sql.len() - trimmed.len();
            let Some(end) = trimmed.get(1..).and_then(|s| s.find('\'')) else {
                return Err(format!("rule statement `{sql}`: unterminated topic after FROM"));
            };
            let topic = trimmed.get(1..=end).unwrap_or("").to_string();
            let rest = trimmed.get(end + 2..).unwrap_or("");
            let text = format!("{}{PLACEHOLDER}{rest}", sql.get(..start).unwrap_or(""));
            return Ok((topic, text));
        }
        search = pos + 4;
    }
    Err(format!("rule statement `{sql}`: expected FROM 'topic/filter'"))
}

fn default_name(e: &Expr) -> String {
    match e {
        Expr::Identifier(i) => i.value.clone(),
        Expr::CompoundIdentifier(parts) => parts.iter().map(|p| p.value.as_str()).collect::<Vec<_>>().join("."),
        other => other.to_string(),
    }
}

fn lookup(values: &[(String, Scalar)], key: &str) -> Val {
    // The last occurrence wins, as for repeated keys in a payload.
    match values.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v) {
        Some(Scalar::Number(n)) => Val::Exact(n.clone()),
        Some(Scalar::Bool(b)) => Val::Bool(*b),
        Some(Scalar::Str(s)) => Val::Str(s.clone()),
        None => Val::Null,
    }
}

fn eval(e: &Expr, values: &[(String, Scalar)], origin: &Origin<'_>) -> Result<Val, String> {
    Ok(match e {
        Expr::Identifier(i) => lookup(values, &i.value),
        Expr::CompoundIdentifier(_) => lookup(values, &default_name(e)),
        Expr::Nested(inner) => eval(inner, values, origin)?,
        Expr::Value(v) => literal(&v.value)?,
        Expr::IsNull(inner) => Val::Bool(eval(inner, values, origin)? == Val::Null),
        Expr::IsNotNull(inner) => Val::Bool(eval(inner, values, origin)? != Val::Null),
        Expr::UnaryOp { op, expr } => {
            let v = eval(expr, values, origin)?;
            match (op, v) {
                (_, Val::Null) => Val::Null,
                (UnaryOperator::Not, Val::Bool(b)) => Val::Bool(!b),
                (UnaryOperator::Minus, v) if v.num().is_some() => Val::Num(-v.num().unwrap_or_default()),
                (UnaryOperator::Plus, v) if v.num().is_some() => v,
                (op, v) => return Err(format!("cannot apply `{op}` to {v:?}")),
            }
        }
        Expr::BinaryOp { left, op, right } => binary(op, eval(left, values, origin)?, eval(right, values, origin)?)?,
        Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            let mut args = Vec::new();
            if let FunctionArguments::List(list) = &f.args {
                for a in &list.args {
                    match a {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => args.push(eval(x, values, origin)?),
                        other => return Err(format!("unsupported argument `{other}` to {name}()")),
                    }
                }
            }
            match (name.as_str(), args.as_slice()) {
                ("topic", []) => Val::Str(origin.topic.to_string()),
                ("topic", [n]) => {
                    let i = n.num().filter(|n| n.fract() == 0.0 && *n >= 1.0).ok_or("topic(n) needs n ≥ 1")?;
                    #[expect(
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss,
                        reason = "checked ≥ 1 and integral"
                    )]
                    let i = i as usize;
                    origin.topic.split('/').nth(i - 1).map_or(Val::Null, |s| Val::Str(s.to_string()))
                }
                ("clientid", []) => Val::Str(origin.client_id.to_string()),
                ("timestamp", []) => Val::Num((origin.now_ns / 1_000_000) as f64),
                _ => {
                    return Err(format!(
                        "unknown function {name}() with {} argument(s); known: topic(), topic(n), clientid(), timestamp()",
                        args.len()
                    ));
                }
            }
        }
        other => return Err(format!("unsupported expression `{other}`")),
    })
}

fn literal(v: &sqlparser::ast::Value) -> Result<Val, String> {
    use sqlparser::ast::Value as V;
    Ok(match v {
        V::Number(..) => {
            let text = v.to_string();
            Val::Num(text.parse::<f64>().map_err(|_| format!("bad number {text}"))?)
        }
        V::SingleQuotedString(s) | V::DoubleQuotedString(s) => Val::Str(s.clone()),
        V::Boolean(b) => Val::Bool(*b),
        V::Null => Val::Null,
        other => return Err(format!("unsupported literal `{other}`")),
    })
}

fn binary(op: &BinaryOperator, l: Val, r: Val) -> Result<Val, String> {
    use BinaryOperator as B;
    if matches!(op, B::And | B::Or) {
        let as_bool = |v: &Val| match v {
            Val::Bool(b) => Ok(Some(*b)),
            Val::Null => Ok(None),
            other => Err(format!("`{op}` needs booleans, got {other:?}")),
        };
        let (a, b) = (as_bool(&l)?, as_bool(&r)?);
        return Ok(match (op, a, b) {
            (B::And, Some(false), _) | (B::And, _, Some(false)) => Val::Bool(false),
            (B::And, Some(true), Some(true)) => Val::Bool(true),
            (B::Or, Some(true), _) | (B::Or, _, Some(true)) => Val::Bool(true),
            (B::Or, Some(false), Some(false)) => Val::Bool(false),
            _ => Val::Null,
        });
    }
    if l == Val::Null || r == Val::Null {
        return Ok(Val::Null);
    }
    if let (Some(a), Some(b)) = (l.num(), r.num()) {
        return Ok(match op {
            B::Plus => Val::Num(a + b),
            B::Minus => Val::Num(a - b),
            B::Multiply => Val::Num(a * b),
            B::Divide => {
                if b == 0.0 {
                    Val::Null
                } else {
                    Val::Num(a / b)
                }
            }
            B::Modulo => Val::Num(a % b),
            B::Gt => Val::Bool(a > b),
            B::GtEq => Val::Bool(a >= b),
            B::Lt => Val::Bool(a < b),
            B::LtEq => Val::Bool(a <= b),
            B::Eq => Val::Bool(a == b),
            B::NotEq => Val::Bool(a != b),
            other => return Err(format!("unsupported operator `{other}`")),
        });
    }
    let cmp = match (&l, &r) {
        (Val::Str(a), Val::Str(b)) => a.cmp(b),
        (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
        _ if matches!(op, B::StringConcat) => return Ok(Val::Str(format!("{}{}", text(&l), text(&r)))),
        _ => return Err(format!("cannot compare {l:?} with {r:?} using `{op}`")),
    };
    Ok(Val::Bool(match op {
        B::Eq => cmp.is_eq(),
        B::NotEq => cmp.is_ne(),
        B::Gt => cmp.is_gt(),
        B::GtEq => cmp.is_ge(),
        B::Lt => cmp.is_lt(),
        B::LtEq => cmp.is_le(),
        B::StringConcat => return Ok(Val::Str(format!("{}{}", text(&l), text(&r)))),
        other => return Err(format!("unsupported operator `{other}` on {l:?} and {r:?}")),
    }))
}

fn text(v: &Val) -> String {
    match v {
        Val::Null => String::new(),
        Val::Num(n) => n.to_string(),
        Val::Exact(n) => n.to_string(),
        Val::Bool(b) => b.to_string(),
        Val::Str(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(json: &str) -> Vec<(String, Scalar)> {
        crate::json::JsonFormat::default().decode(json.as_bytes()).unwrap().remove(0).values
    }

    const ORIGIN: Origin<'static> = Origin { topic: "devices/d1/telemetry", client_id: "d1", now_ns: 5_000_000 };

    #[test]
    fn select_and_filter() {
        let r = SelectRule::parse("SELECT temp, humidity FROM 'devices/+/telemetry' WHERE temp > -50").unwrap();
        assert_eq!(r.topic(), "devices/+/telemetry");
        let out = r.apply(&reading(r#"{"temp":21.5,"humidity":40,"battery":9}"#), &ORIGIN).unwrap().unwrap();
        assert_eq!(out.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["temp", "humidity"]);
        assert!(r.apply(&reading(r#"{"temp":-80,"humidity":40}"#), &ORIGIN).unwrap().is_none());
        // A reading without `temp` has WHERE = NULL: dropped, not an error.
        assert!(r.apply(&reading(r#"{"humidity":40}"#), &ORIGIN).unwrap().is_none());
    }

    #[test]
    fn expressions_aliases_and_functions() {
        let r = SelectRule::parse(
            "select *, temp * 1.8 + 32 as temp_f, topic(2) as dev, clientid() as cid, gps.lat from 'devices/{device}/telemetry' where status = 'ok' and not (temp is null)",
        )
        .unwrap();
        assert_eq!(r.topic(), "devices/{device}/telemetry");
        let out = r.apply(&reading(r#"{"temp":10,"status":"ok","gps":{"lat":1.5}}"#), &ORIGIN).unwrap().unwrap();
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("temp_f"), Some(Scalar::Number(serde_json::Number::from_f64(50.0).unwrap())));
        assert_eq!(get("dev"), Some(Scalar::Str("d1".into())));
        assert_eq!(get("cid"), Some(Scalar::Str("d1".into())));
        assert_eq!(get("gps.lat"), Some(Scalar::Number(serde_json::Number::from_f64(1.5).unwrap())));
        assert_eq!(get("temp"), Some(Scalar::Number(10.into())));
    }

    #[test]
    fn bad_statements_are_refused_at_parse() {
        for (sql, want) in [
            ("SELECT a FROM devices", "expected FROM 'topic/filter'"),
            ("SELECT a FROM 'x' GROUP BY a", "only SELECT"),
            ("SELECT a FROM 'x' WHERE", "rule statement"),
            ("SELECT upper(a) FROM 'x'", "unknown function upper()"),
            ("SELECT a FROM 'x' JOIN y ON true", "FROM must name one topic filter"),
            ("SELECT a FROM 'x", "unterminated"),
        ] {
            let err = SelectRule::parse(sql).unwrap_err();
            assert!(err.contains(want), "{sql}: {err}");
        }
    }

    #[test]
    fn type_errors_at_run_time_are_reasons() {
        let r = SelectRule::parse("SELECT a FROM 'x' WHERE a > 1").unwrap();
        let err = r.apply(&reading(r#"{"a":"text"}"#), &ORIGIN).unwrap_err();
        assert!(err.contains("cannot compare"), "{err}");
    }
}
