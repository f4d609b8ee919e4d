//! Answers a time-bucketed aggregate from a rollup table ([`crate::rollup`])
//! when that gives the same answer as scanning the rows:
//!
//! ```sql
//! SELECT date_bin(INTERVAL '1 day', time) AS day, name, avg(velocity), max(fuel)
//! FROM readings WHERE time >= '2025-01-01' AND time < '2026-01-01' GROUP BY 1, name
//! ```
//!
//! with a 1 h rollup of `readings` reads `readings_1h` (24 rows a day per
//! series) for the whole hours of the range and the source rows only for the
//! partial hours at its edges, and combines them: min of mins, sum of sums,
//! `avg` = sum of sums / sum of counts, `count` = sum of counts, `last` = the
//! latest bucket's last. It applies when the aggregate reads one table
//! directly, groups by `date_bin(i, time[, origin])` with `i` a multiple of
//! the rollup's interval and the origin on its grid, plus tag columns;
//! filters only on tags and time; and every aggregate is `min`, `max`, `sum`,
//! `count`, `avg` of a numeric field, `count(*)`, or (when grouping by every
//! tag, one series per group) `last(field, time)`. Buckets the rollup has not
//! recomputed yet are recomputed first. `EXPLAIN` shows the rollup table's
//! scan. Sums of floats are added in another order than a scan adds them,
//! so they can differ in the last bits, as they do between scans with
//! different parallelism.

use std::sync::Arc;

use arrow_schema::DataType;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, ScalarValue, TableReference};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::Result;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_aggregate::first_last::last_value_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, NullTreatment, ScalarFunction};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, ExprSchemable, LogicalPlan, LogicalPlanBuilder, TableScan, cast, col, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

use super::table::{Pushed, TelemarkTable};
use crate::rollup::{ROWS_COLUMN, RollupRule, column};
use crate::schema::{ColumnKind, FieldType, TIME_COLUMN};

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct RollupRewrite;

impl OptimizerRule for RollupRewrite {
    fn name(&self) -> &str {
        "telemark_rollup"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else { return Ok(Transformed::no(plan)) };
        let LogicalPlan::TableScan(scan) = agg.input.as_ref() else { return Ok(Transformed::no(plan)) };
        match rewrite(agg, scan)? {
            Some(p) => Ok(Transformed::yes(p)),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What a rollup row holds for one aggregate of the query.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Min,
    Max,
    Sum,
    Count,
    Last,
    Rows,
}

impl Part {
    fn suffix(self) -> &'static str {
        match self {
            Part::Min => "min",
            Part::Max => "max",
            Part::Sum => "sum",
            Part::Count => "count",
            Part::Last => "last",
            Part::Rows => ROWS_COLUMN,
        }
    }
}

/// An aggregate of the query in terms of partial columns (indexes into the partial list).
#[derive(Debug)]
enum Combine {
    Min(usize),
    Max(usize),
    Sum(usize),
    Count(usize),
    Avg(usize, usize),
    Last(usize),
}

fn rewrite(agg: &Aggregate, scan: &TableScan) -> Result<Option<LogicalPlan>> {
    let Some(found) = analyse(agg, scan) else { return Ok(None) };
    let Analysis { table, rule, bin, tags, partials, combines, tag_filters, lo, hi } = found;
    let stride = rule.stride();
    let ceil =
        |t: i64| t.div_euclid(stride).saturating_add(i64::from(t.rem_euclid(stride) != 0)).saturating_mul(stride);
    let floor = |t: i64| t.div_euclid(stride).saturating_mul(stride);
    let (a, b) = (lo.map(ceil), hi.map(floor));
    if let (Some(a), Some(b)) = (a, b)
        && a >= b
    {
        return Ok(None); // no whole bucket in the range
    }
    let db = table.db();
    // Recompute what is marked in the range first (blocking: tell tokio, when it runs us).
    let refresh = || db.refresh_rollup_range(&rule, a.unwrap_or(i64::MIN), b.unwrap_or(i64::MAX));
    let refreshed = match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(refresh)
        }
        _ => refresh(),
    };
    if let Err(e) = refreshed {
        // The rollup may be stale: the rows answer.
        tracing::warn!(error = %e, target = %rule.target, "recomputing the rollup failed; answering from the rows");
        return Ok(None);
    }
    let Some(target) = table.sibling(&rule.target) else { return Ok(None) };
    // The rollup may lack a column (a field that never had a value, a tag no
    // recomputed row had yet): then the rows answer.
    let filtered = tag_filters.iter().flat_map(|f| f.column_refs()).map(|c| c.name.clone());
    if !partials.iter().all(|(f, p)| {
        let name = if *p == Part::Rows { ROWS_COLUMN.to_string() } else { column(f, p.suffix()) };
        target.has_column(&name)
    }) || !tags.iter().cloned().chain(filtered).all(|t| target.has_column(&t))
    {
        return Ok(None);
    }
    let time = || col(Column::new_unqualified(TIME_COLUMN));
    let ts = |t: i64| lit(ScalarValue::TimestampNanosecond(Some(t), None));
    let pname = |i: usize| format!("__p{i}");
    let unqualified = |e: &Expr| -> Result<Expr> {
        use datafusion::common::tree_node::TreeNode;
        Ok(e.clone()
            .transform(|x| match x {
                Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(c.name)))),
                other => Ok(Transformed::no(other)),
            })?
            .data)
    };
    let range = |s: Option<i64>, e: Option<i64>| -> Vec<Expr> {
        s.map(|s| time().gt_eq(ts(s))).into_iter().chain(e.map(|e| time().lt(ts(e)))).collect()
    };
    let mut filters: Vec<Expr> = tag_filters.iter().map(unqualified).collect::<Result<_>>()?;

    // The rollup's rows for the whole buckets of the range.
    filters.extend(range(a, b));
    let mut exprs = vec![time()];
    exprs.extend(tags.iter().map(|t| col(Column::new_unqualified(t))));
    for (i, (f, p)) in partials.iter().enumerate() {
        let name = if *p == Part::Rows { ROWS_COLUMN.to_string() } else { column(f, p.suffix()) };
        exprs.push(col(Column::new_unqualified(name)).alias(pname(i)));
    }
    let source = provider_as_source(Arc::new(target));
    let mut union =
        LogicalPlanBuilder::scan_with_filters(TableReference::bare(rule.target.clone()), source, None, filters)?
            .project(exprs)?;

    // The source's rows in the partial buckets at the edges, aggregated the same way.
    let edges = [lo.zip(a).filter(|(l, a)| l < a), hi.zip(b).filter(|(h, b)| b < h).map(|(h, b)| (b, h))];
    for (s, e) in edges.into_iter().flatten() {
        let mut filters: Vec<Expr> = tag_filters.iter().map(unqualified).collect::<Result<_>>()?;
        filters.extend(range(Some(s), Some(e)));
        let interval = lit(ScalarValue::new_interval_mdn(0, 0, stride));
        let binned =
            Expr::ScalarFunction(ScalarFunction::new_udf(super::functions::date_bin_udf(), vec![interval, time()]));
        let mut group = vec![binned.alias(TIME_COLUMN)];
        group.extend(tags.iter().map(|t| col(Column::new_unqualified(t))));
        let mut aggs = Vec::new();
        for (i, (f, p)) in partials.iter().enumerate() {
            let x = || col(Column::new_unqualified(f.clone()));
            let e = match p {
                Part::Min => min(x()),
                Part::Max => max(x()),
                Part::Sum => sum(x()),
                Part::Count => count(x()),
                Part::Rows => count(lit(1i64)),
                Part::Last => last(x())?,
            };
            aggs.push(e.alias(pname(i)));
        }
        let raw = LogicalPlanBuilder::scan_with_filters(scan.table_name.clone(), scan.source.clone(), None, filters)?
            .aggregate(group, aggs)?
            .build()?;
        union = union.union(raw)?;
    }

    // Combine the partial rows into the query's buckets and aggregates.
    let union = union.build()?;
    let Expr::ScalarFunction(call) = &agg.group_expr[bin] else { return Ok(None) };
    let mut args = call.args.clone();
    args[1] = time();
    let mut group = Vec::new();
    for (i, g) in agg.group_expr.iter().enumerate() {
        group.push(if i == bin {
            Expr::ScalarFunction(ScalarFunction::new_udf(call.func.clone(), args.clone()))
        } else {
            unqualified(g)?
        });
    }
    let p = |i: usize| col(Column::new_unqualified(pname(i)));
    // Aggregates over the partials, each once (`count(x)` and `avg(x)` share `sum` of the counts).
    let mut aggs: Vec<Expr> = Vec::new();
    let mut at_agg = |e: Expr| match aggs.iter().position(|a| *a == e) {
        Some(i) => i,
        None => {
            aggs.push(e);
            aggs.len() - 1
        }
    };
    let mut outputs: Vec<(usize, Option<usize>)> = Vec::new();
    for c in &combines {
        outputs.push(match c {
            Combine::Min(i) => (at_agg(min(p(*i))), None),
            Combine::Max(i) => (at_agg(max(p(*i))), None),
            Combine::Sum(i) | Combine::Count(i) => (at_agg(sum(p(*i))), None),
            Combine::Avg(s, n) => (at_agg(sum(p(*s))), Some(at_agg(sum(p(*n))))),
            Combine::Last(i) => (at_agg(last(p(*i))?), None),
        });
    }
    let combined = LogicalPlanBuilder::from(union).aggregate(group, aggs)?.build()?;

    // The query's columns, under their names.
    let out = combined.schema().clone();
    let at = |i: usize| Expr::Column(Column::from(out.qualified_field(i)));
    let mut exprs = Vec::new();
    let original = agg.schema.clone();
    let named = |e: Expr, i: usize| {
        let (q, f) = original.qualified_field(i);
        e.alias_qualified(q.cloned(), f.name())
    };
    for i in 0..agg.group_expr.len() {
        exprs.push(named(at(i), i));
    }
    let groups = agg.group_expr.len();
    for (j, (first, second)) in outputs.into_iter().enumerate() {
        let i = groups + j;
        let e = match (second, &combines[j]) {
            // avg: sum of sums / sum of counts.
            (Some(n), _) => cast(at(groups + first), DataType::Float64) / cast(at(groups + n), DataType::Float64),
            // A count is 0, not NULL, where every partial is NULL (a field added later).
            (None, Combine::Count(_)) => coalesce(vec![at(groups + first), lit(0i64)]),
            (None, _) => at(groups + first),
        };
        let wanted = original.field(i).data_type();
        let e = if e.get_type(&out)? == *wanted { e } else { cast(e, wanted.clone()) };
        exprs.push(named(e, i));
    }
    Ok(Some(LogicalPlanBuilder::from(combined).project(exprs)?.build()?))
}

/// `last_value(x ORDER BY time) IGNORE NULLS`, what `last(x, time)` plans to.
fn last(x: Expr) -> Result<Expr> {
    last_value_udaf()
        .call(vec![x])
        .order_by(vec![col(Column::new_unqualified(TIME_COLUMN)).sort(true, false)])
        .null_treatment(NullTreatment::IgnoreNulls)
        .build()
}

struct Analysis {
    table: TelemarkTable,
    rule: RollupRule,
    /// Index of the `date_bin` among the group expressions.
    bin: usize,
    /// Tag columns grouped by.
    tags: Vec<String>,
    /// Partial columns: (field, part).
    partials: Vec<(String, Part)>,
    combines: Vec<Combine>,
    tag_filters: Vec<Expr>,
    lo: Option<i64>,
    hi: Option<i64>,
}

/// The rollup that answers `agg` over `scan`, if one does.
fn analyse(agg: &Aggregate, scan: &TableScan) -> Option<Analysis> {
    if scan.fetch.is_some() || agg.aggr_expr.is_empty() {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<TelemarkTable>()?;
    let (database, name) = table.names();
    let rule = table.db().rollup_of(database, name)?;
    let stride = rule.stride();
    let (mut lo, mut hi) = (None::<i64>, None::<i64>);
    let mut tag_filters = Vec::new();
    for f in &scan.filters {
        let pushed = table.classify(f)?;
        let mut tag_only = true;
        for p in pushed {
            match p {
                Pushed::From(t) => {
                    lo = Some(lo.map_or(t, |l| l.max(t)));
                    tag_only = false;
                }
                Pushed::Until(t) => {
                    hi = Some(hi.map_or(t, |h| h.min(t)));
                    tag_only = false;
                }
                Pushed::Tag(..) | Pushed::Present(_) => {}
                // Rows chosen by their values: a rollup keeps no rows to choose from.
                Pushed::Field(_) => return None,
            }
        }
        if tag_only {
            tag_filters.push(f.clone());
        }
    }
    let mut bin = None;
    let mut tags = Vec::new();
    for (i, g) in agg.group_expr.iter().enumerate() {
        match g {
            Expr::Column(c) if table.is_tag(&c.name) => tags.push(c.name.clone()),
            Expr::ScalarFunction(f) if f.name() == "date_bin" && bin.is_none() => {
                let (every, origin) = match f.args.as_slice() {
                    [Expr::Literal(iv, _), Expr::Column(c)] if c.name == TIME_COLUMN => (iv, 0),
                    [Expr::Literal(iv, _), Expr::Column(c), Expr::Literal(o, _)] if c.name == TIME_COLUMN => {
                        let ScalarValue::TimestampNanosecond(Some(o), _) = o else { return None };
                        (iv, *o)
                    }
                    _ => return None,
                };
                let ScalarValue::IntervalMonthDayNano(Some(iv)) = every else { return None };
                let ns = i64::from(iv.days).checked_mul(86_400_000_000_000)?.checked_add(iv.nanoseconds)?;
                if iv.months != 0 || ns <= 0 || ns % stride != 0 || origin.rem_euclid(stride) != 0 {
                    return None;
                }
                bin = Some(i);
            }
            _ => return None,
        }
    }
    let bin = bin?;
    let schema = table.db().table_schema(database, name)?;
    let all_tags = schema.columns().iter().filter(|c| c.kind == ColumnKind::Tag).count();
    let one_series_per_group = tags.len() == all_tags;
    let mut partials: Vec<(String, Part)> = Vec::new();
    let mut part = |f: &str, p: Part| -> usize {
        match partials.iter().position(|(g, q)| g == f && *q == p) {
            Some(i) => i,
            None => {
                partials.push((f.to_string(), p));
                partials.len() - 1
            }
        }
    };
    let mut combines = Vec::new();
    for a in &agg.aggr_expr {
        // `count(*)` comes as `count(Int64(1)) AS "count(*)"`.
        let a = match a {
            Expr::Alias(alias) => alias.expr.as_ref(),
            a => a,
        };
        let Expr::AggregateFunction(AggregateFunction { func, params }) = a else { return None };
        if params.distinct || params.filter.is_some() {
            return None;
        }
        // (avg of an integer field comes as `avg(CAST(x AS Float64))`, a float sum that
        // does not overflow; the rollup's integer sum can: it is not rewritten.)
        let field = match params.args.as_slice() {
            [Expr::Column(c)] => {
                let id = schema.id_of(&c.name)?;
                match schema.column(id)?.kind {
                    ColumnKind::Field(FieldType::F64 | FieldType::I64 | FieldType::U64) => Some(c.name.clone()),
                    _ => return None,
                }
            }
            [Expr::Literal(v, _)] if func.name() == "count" && !v.is_null() => None,
            _ => return None,
        };
        let ordered_by_time = match params.order_by.as_slice() {
            [] => None,
            [s] if s.asc && matches!(&s.expr, Expr::Column(c) if c.name == TIME_COLUMN) => Some(()),
            _ => return None,
        };
        let c = match (func.name(), field, ordered_by_time) {
            ("count", None, None) => Combine::Count(part("", Part::Rows)),
            ("min", Some(f), None) => Combine::Min(part(&f, Part::Min)),
            ("max", Some(f), None) => Combine::Max(part(&f, Part::Max)),
            ("sum", Some(f), None) => Combine::Sum(part(&f, Part::Sum)),
            ("count", Some(f), None) => Combine::Count(part(&f, Part::Count)),
            ("avg", Some(f), None) => Combine::Avg(part(&f, Part::Sum), part(&f, Part::Count)),
            ("last_value", Some(f), Some(()))
                if one_series_per_group && params.null_treatment == Some(NullTreatment::IgnoreNulls) =>
            {
                Combine::Last(part(&f, Part::Last))
            }
            _ => return None,
        };
        combines.push(c);
    }
    Some(Analysis { table: table.reopened(), rule, bin, tags, partials, combines, tag_filters, lo, hi })
}
