//! Gap filling: `date_bin_gapfill(interval, time[, origin])` as a GROUP BY
//! expression makes one row per group for *every* bucket of the WHERE
//! clause's time range, not just the buckets that have rows; `locf(agg)`
//! (last observation carried forward) and `interpolate(agg)` (linear, by
//! bucket time) around an aggregate in the SELECT list fill the empty ones,
//! starting from the group's last value before the range. The names and
//! shape are InfluxDB 3's:
//!
//! ```sql
//! SELECT date_bin_gapfill(INTERVAL '5 minutes', time) AS t, device,
//!        avg(temp), locf(avg(temp)), interpolate(max(fuel))
//! FROM readings WHERE time >= now() - INTERVAL '1 hour' AND time < now()
//! GROUP BY 1, device
//! ```
//!
//! How: an analyzer rule ([`GapFillRewrite`]) turns the GROUP BY
//! expression into `date_bin` (the aggregate then runs as any other) and puts
//! a [`GapFill`] node between the aggregate and the SELECT list, which drops
//! the `locf` / `interpolate` wrappers and remembers what each column is
//! filled with. When a column is filled, the node also holds the same
//! aggregate over the rows *before* the range, run only if some group's first
//! bucket is empty (or null) and then read for its last non-empty bucket per
//! group. [`GapFillExec`] does the filling on the (small) aggregated rows.
//!
//! Rules: the time range comes from the WHERE clause (`time >= / > lower`,
//! optionally `time < / <= upper` or `BETWEEN`; without an upper bound the
//! range ends at `now()`); the interval has no months; groups are those with
//! at least one row in the range; every aggregate column of a filled query
//! is NULL in an empty bucket unless wrapped.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow_array::types::TimestampNanosecondType;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, RecordBatchOptions, TimestampNanosecondArray, UInt32Array,
};
use arrow_schema::{DataType, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use datafusion::arrow::array::AsArray;
use datafusion::arrow::compute::kernels::zip::zip;
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, DFSchemaRef, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, ColumnarValue, Expr, Extension, Filter, LogicalPlan, Operator, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
    Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, Distribution, ExecutionPlan, InputDistributionRequirements, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;

const GAPFILL: &str = "date_bin_gapfill";
const LOCF: &str = "locf";
const INTERPOLATE: &str = "interpolate";

/// At most this many output rows (groups × buckets) per query.
const MAX_ROWS: u64 = 10_000_000;

const USAGE: &str = "date_bin_gapfill(interval, time) fills gaps as a GROUP BY expression of an aggregate whose \
                     SELECT list is directly over it (no HAVING), with the time range in WHERE, e.g. \
                     SELECT date_bin_gapfill(INTERVAL '1 minute', time) AS minute, device, locf(avg(temp)) \
                     FROM readings WHERE time >= now() - INTERVAL '1 hour' GROUP BY 1, device";

pub(crate) fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(Marker::gapfill()));
    ctx.register_udf(ScalarUDF::new_from_impl(Marker::fill(LOCF)));
    ctx.register_udf(ScalarUDF::new_from_impl(Marker::fill(INTERPOLATE)));
}

/// The three functions as the SQL planner sees them: they type-check like
/// the real thing and are rewritten away by [`GapFillRewrite`]; one left in
/// a plan is misused, and says so.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Marker {
    name: &'static str,
    signature: Signature,
    /// `date_bin`, whose signature and type `date_bin_gapfill` borrows.
    bin: Option<ScalarUDF>,
}

impl Marker {
    fn gapfill() -> Self {
        let bin = datafusion::functions::datetime::date_bin().as_ref().clone();
        Marker { name: GAPFILL, signature: bin.signature().clone(), bin: Some(bin) }
    }

    fn fill(name: &'static str) -> Self {
        Marker { name, signature: Signature::any(1, Volatility::Immutable), bin: None }
    }
}

impl ScalarUDFImpl for Marker {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match &self.bin {
            Some(bin) => bin.return_type(arg_types),
            None => arg_types.first().cloned().ok_or_else(|| plan(format!("{}() takes one argument", self.name))),
        }
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Err(misuse(self.name))
    }
}

fn plan(msg: String) -> DataFusionError {
    DataFusionError::Plan(msg)
}

fn misuse(name: &str) -> DataFusionError {
    if name == GAPFILL {
        plan(USAGE.to_string())
    } else {
        plan(format!(
            "{name}(x) fills an aggregate of a query grouped by date_bin_gapfill(interval, time), \
             e.g. {name}(avg(temp)); it cannot be used elsewhere"
        ))
    }
}

fn marker_name(e: &Expr) -> Option<&'static str> {
    match e {
        Expr::ScalarFunction(f) => [GAPFILL, LOCF, INTERPOLATE].into_iter().find(|n| f.name() == *n),
        _ => None,
    }
}

/// What an aggregate column of a gap-filled query shows in an empty bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd)]
enum Fill {
    Null,
    Locf,
    Interpolate,
}

/// Rewrites `date_bin_gapfill` queries into an aggregate under a [`GapFill`].
#[derive(Debug)]
pub(crate) struct GapFillRewrite;

impl AnalyzerRule for GapFillRewrite {
    fn name(&self) -> &str {
        "telemark_gap_fill"
    }

    fn analyze(&self, plan: LogicalPlan, config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut rewrote = false;
        let plan = plan
            .transform_up_with_subqueries(|node| {
                let out = rewrite(node, config)?;
                if out.transformed {
                    rewrote = true;
                    Ok(out)
                } else if rewrote {
                    // Nodes above a GapFill see nullable aggregates now.
                    Ok(Transformed::yes(out.data.recompute_schema()?))
                } else {
                    Ok(out)
                }
            })?
            .data;
        plan.apply_with_subqueries(|node| {
            for e in node.expressions() {
                let mut found = None;
                e.apply(|x| {
                    found = marker_name(x);
                    Ok(if found.is_some() { TreeNodeRecursion::Stop } else { TreeNodeRecursion::Continue })
                })?;
                if let Some(name) = found {
                    return Err(misuse(name));
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(plan)
    }
}

/// A time bound from WHERE: `time >= expr` (inclusive) or `time > expr`.
type Bound = (Expr, bool);

fn rewrite(node: LogicalPlan, config: &ConfigOptions) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Projection(proj) = &node else { return Ok(Transformed::no(node)) };
    let LogicalPlan::Aggregate(agg) = proj.input.as_ref() else { return Ok(Transformed::no(node)) };
    let is_gapfill = |e: &Expr| marker_name(e) == Some(GAPFILL);
    let Some(time_idx) = agg.group_expr.iter().position(is_gapfill) else { return Ok(Transformed::no(node)) };
    if agg.group_expr.iter().filter(|e| is_gapfill(e)).count() > 1 {
        return Err(plan("only one date_bin_gapfill(...) per GROUP BY".into()));
    }
    let Expr::ScalarFunction(call) = &agg.group_expr[time_idx] else { return Ok(Transformed::no(node)) };
    let time_col = match call.args.get(1).map(strip_cast) {
        Some(Expr::Column(c)) => c.clone(),
        other => {
            return Err(plan(format!(
                "date_bin_gapfill's second argument must be the time column, got {}",
                other.map_or("nothing".to_string(), |e| e.to_string())
            )));
        }
    };
    let stride = call.args[0].clone();
    let origin = call.args.get(2).cloned();

    // The aggregate, binned by date_bin under the name the SELECT list uses.
    let name = agg.group_expr[time_idx].schema_name().to_string();
    let mut group_expr = agg.group_expr.clone();
    group_expr[time_idx] =
        Expr::ScalarFunction(ScalarFunction::new_udf(super::functions::date_bin_udf(), call.args.clone())).alias(name);

    let LogicalPlan::Filter(filter) = agg.input.as_ref() else {
        return Err(plan(format!("date_bin_gapfill needs a time range in WHERE ({}); {USAGE}", time_col.name)));
    };
    let (lower, mut upper, others) = bounds(&filter.predicate, &time_col);
    if lower.is_empty() {
        return Err(plan(format!(
            "date_bin_gapfill needs a lower bound on {} in WHERE, e.g. {} >= now() - INTERVAL '1 hour'",
            time_col.name, time_col.name
        )));
    }
    if upper.is_empty() {
        upper.push((datafusion::functions::datetime::now(config).call(vec![]), true));
    }
    let groups = agg.group_expr.len();
    let agg_schema = agg.schema.clone();

    // Each filled aggregate (`locf(avg(x))`) is a copy of the aggregate
    // (`avg(x)`) in a column of its own, so the query can show both.
    let mut aggr_expr = agg.aggr_expr.clone();
    let mut fills = vec![Fill::Null; agg.aggr_expr.len()];
    let mut copies: Vec<((usize, Fill), String)> = Vec::new();
    let mut exprs = Vec::with_capacity(proj.expr.len());
    for e in &proj.expr {
        let original = e.schema_name().to_string();
        let out = e.clone().transform_up(|x| {
            let Some(kind) = marker_name(&x).filter(|n| *n != GAPFILL) else { return Ok(Transformed::no(x)) };
            let Expr::ScalarFunction(f) = &x else { return Ok(Transformed::no(x)) };
            // `count(*)` comes as `count(Int64(1)) AS "count(*)"`.
            let arg = match f.args.first() {
                Some(Expr::Alias(a)) => Some(a.expr.as_ref()),
                arg => arg,
            };
            let Some(Expr::Column(c)) = arg else {
                return Err(plan(format!("{kind}() takes one aggregate of the query, e.g. {kind}(avg(temp))")));
            };
            let idx = agg_schema.index_of_column(c)?;
            if idx < groups {
                return Err(plan(format!("{kind}({c}): the argument must be an aggregate, not a GROUP BY expression")));
            }
            let fill = if kind == LOCF { Fill::Locf } else { Fill::Interpolate };
            let data_type = agg_schema.field(idx).data_type();
            if fill == Fill::Interpolate && !data_type.is_numeric() {
                return Err(plan(format!("interpolate({c}) needs a number, not {data_type}")));
            }
            let name = match copies.iter().find(|(k, _)| *k == (idx, fill)) {
                Some((_, name)) => name.clone(),
                None => {
                    let name = format!("{kind}({})", c.name);
                    aggr_expr.push(agg.aggr_expr[idx - groups].clone().unalias().alias(&name));
                    fills.push(fill);
                    copies.push(((idx, fill), name.clone()));
                    name
                }
            };
            Ok(Transformed::yes(Expr::Column(Column::new_unqualified(name))))
        })?;
        exprs.push(if out.transformed { out.data.alias_if_changed(original)? } else { out.data });
    }
    let binned = Aggregate::try_new(agg.input.clone(), group_expr.clone(), aggr_expr.clone())?;

    // The same aggregate over the rows before the range, for the values to fill from.
    let prior = if fills.iter().any(|f| *f != Fill::Null) {
        let lower_conds = lower.iter().map(|(e, incl)| compare(&time_col, e, *incl));
        let in_range = conjunction(lower_conds).ok_or_else(|| plan("date_bin_gapfill: no lower bound".into()))?;
        let predicate = others.into_iter().fold(Expr::Not(Box::new(in_range)), Expr::and);
        let input = LogicalPlan::Filter(Filter::try_new(predicate, filter.input.clone())?);
        Some(Arc::new(LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(input), group_expr, aggr_expr)?)))
    } else {
        None
    };
    let node = GapFill::new(
        Arc::new(LogicalPlan::Aggregate(binned)),
        prior,
        Params { groups, time: time_idx, fills },
        Exprs { stride, origin, lower, upper },
    )?;
    let gapfill = LogicalPlan::Extension(Extension { node: Arc::new(node) });
    Ok(Transformed::yes(LogicalPlan::Projection(Projection::try_new(exprs, Arc::new(gapfill))?)))
}

fn strip_cast(e: &Expr) -> &Expr {
    match e {
        Expr::Cast(c) => strip_cast(&c.expr),
        Expr::TryCast(c) => strip_cast(&c.expr),
        other => other,
    }
}

/// `time >= e` (inclusive) or `time > e`.
fn compare(time: &Column, e: &Expr, inclusive: bool) -> Expr {
    let col = Expr::Column(time.clone());
    if inclusive { col.gt_eq(e.clone()) } else { col.gt(e.clone()) }
}

/// Splits a WHERE clause into lower bounds, upper bounds (`(expr, inclusive)`)
/// of `time` and the other conjuncts.
fn bounds(predicate: &Expr, time: &Column) -> (Vec<Bound>, Vec<Bound>, Vec<Expr>) {
    let (mut lower, mut upper, mut others) = (Vec::new(), Vec::new(), Vec::new());
    let is_time = |e: &Expr| matches!(strip_cast(e), Expr::Column(c) if c == time);
    let constant = |e: &Expr| e.column_refs().is_empty();
    for c in split_conjunction(predicate) {
        match c {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (bound, op) = if is_time(left) && constant(right) {
                    (right.as_ref(), *op)
                } else if is_time(right) && constant(left) {
                    match op.swap() {
                        Some(op) => (left.as_ref(), op),
                        None => {
                            others.push(c.clone());
                            continue;
                        }
                    }
                } else {
                    others.push(c.clone());
                    continue;
                };
                match op {
                    Operator::GtEq => lower.push((bound.clone(), true)),
                    Operator::Gt => lower.push((bound.clone(), false)),
                    Operator::LtEq => upper.push((bound.clone(), true)),
                    Operator::Lt => upper.push((bound.clone(), false)),
                    _ => others.push(c.clone()),
                }
            }
            Expr::Between(b) if !b.negated && is_time(&b.expr) && constant(&b.low) && constant(&b.high) => {
                lower.push((b.low.as_ref().clone(), true));
                upper.push((b.high.as_ref().clone(), true));
            }
            _ => others.push(c.clone()),
        }
    }
    (lower, upper, others)
}

/// Where the columns of a gap-filled aggregate are, and how each is filled.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
struct Params {
    /// Number of GROUP BY columns (they come first in the aggregate's output).
    groups: usize,
    /// Which of them is the bucket.
    time: usize,
    /// One per aggregate column.
    fills: Vec<Fill>,
}

/// The constant expressions of a gap fill, evaluated when it is planned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
struct Exprs {
    stride: Expr,
    origin: Option<Expr>,
    lower: Vec<Bound>,
    upper: Vec<Bound>,
}

/// The logical node: fills the gaps of its input, an aggregate grouped by a
/// time bucket; `prior` is the same aggregate over the rows before the range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct GapFill {
    input: Arc<LogicalPlan>,
    prior: Option<Arc<LogicalPlan>>,
    params: Params,
    exprs: Exprs,
    schema: DFSchemaRef,
}

impl PartialOrd for GapFill {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        (self == other).then_some(std::cmp::Ordering::Equal)
    }
}

impl GapFill {
    fn new(input: Arc<LogicalPlan>, prior: Option<Arc<LogicalPlan>>, params: Params, exprs: Exprs) -> Result<Self> {
        // An empty bucket has no value for any aggregate, `count(*)` included.
        let fields = input
            .schema()
            .iter()
            .enumerate()
            .map(|(i, (q, f))| {
                let f = if i >= params.groups { Arc::new(f.as_ref().clone().with_nullable(true)) } else { f.clone() };
                (q.cloned(), f)
            })
            .collect();
        let schema = Arc::new(DFSchema::new_with_metadata(fields, input.schema().metadata().clone())?);
        Ok(GapFill { input, prior, params, exprs, schema })
    }
}

impl UserDefinedLogicalNodeCore for GapFill {
    fn name(&self) -> &str {
        "GapFill"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        std::iter::once(self.input.as_ref()).chain(self.prior.as_deref()).collect()
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let e = &self.exprs;
        std::iter::once(e.stride.clone())
            .chain(e.origin.clone())
            .chain(e.lower.iter().map(|b| b.0.clone()))
            .chain(e.upper.iter().map(|b| b.0.clone()))
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.exprs;
        let time = self.schema.field(self.params.time).name();
        write!(f, "GapFill: {time}, stride={}", e.stride)?;
        if let Some(o) = &e.origin {
            write!(f, ", origin={o}")?;
        }
        let show = |b: &[Bound], lo: bool| {
            b.iter()
                .map(|(x, incl)| {
                    let op = match (lo, *incl) {
                        (true, true) => ">=",
                        (true, false) => ">",
                        (false, true) => "<=",
                        (false, false) => "<",
                    };
                    format!("{op}{x}")
                })
                .collect::<Vec<_>>()
                .join(" and ")
        };
        write!(f, ", range=[{}, {}]", show(&e.lower, true), show(&e.upper, false))?;
        for (i, fill) in self.params.fills.iter().enumerate() {
            if *fill != Fill::Null {
                let name = self.schema.field(self.params.groups + i).name();
                write!(f, ", {name}")?;
            }
        }
        Ok(())
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let e = &self.exprs;
        let mut it = exprs.into_iter();
        let mut next = || it.next().ok_or_else(|| DataFusionError::Internal("GapFill: too few expressions".into()));
        let stride = next()?;
        let origin = if e.origin.is_some() { Some(next()?) } else { None };
        let lower = e.lower.iter().map(|b| Ok((next()?, b.1))).collect::<Result<Vec<_>>>()?;
        let upper = e.upper.iter().map(|b| Ok((next()?, b.1))).collect::<Result<Vec<_>>>()?;
        let mut inputs = inputs.into_iter();
        let input = inputs.next().ok_or_else(|| DataFusionError::Internal("GapFill: no input".into()))?;
        let prior = inputs.next().map(Arc::new);
        GapFill::new(Arc::new(input), prior, self.params.clone(), Exprs { stride, origin, lower, upper })
    }
}

/// The physical planner of our sessions: DataFusion's, plus [`GapFillExec`].
#[derive(Debug)]
pub(crate) struct Planner;

#[async_trait]
impl QueryPlanner for Planner {
    async fn create_physical_plan(&self, plan: &LogicalPlan, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(GapFillPlanner)])
            .create_physical_plan(plan, state)
            .await
    }
}

#[derive(Debug)]
struct GapFillPlanner;

#[async_trait]
impl ExtensionPlanner for GapFillPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(node) = node.as_any().downcast_ref::<GapFill>() else { return Ok(None) };
        let eval = |e: &Expr| -> Result<ScalarValue> {
            let pe = planner.create_physical_expr(e, &DFSchema::empty(), session, planning_ctx)?;
            let one = RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                vec![],
                &RecordBatchOptions::new().with_row_count(Some(1)),
            )?;
            match pe.evaluate(&one)? {
                ColumnarValue::Scalar(s) => Ok(s),
                ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0),
            }
        };
        let e = &node.exprs;
        let stride = stride_ns(&eval(&e.stride)?)?;
        let origin = match &e.origin {
            Some(o) => timestamp_ns(&eval(o)?, "origin")?,
            None => 0,
        };
        let mut start = i64::MIN;
        for (x, incl) in &e.lower {
            let v = timestamp_ns(&eval(x)?, "lower time bound")?;
            start = start.max(if *incl { v } else { v.saturating_add(1) });
        }
        let mut end = i64::MAX;
        for (x, incl) in &e.upper {
            let v = timestamp_ns(&eval(x)?, "upper time bound")?;
            end = end.min(if *incl { v.saturating_add(1) } else { v });
        }
        let buckets = Buckets::new(stride, origin, start, end)?;
        let mut inputs = physical_inputs.iter().cloned();
        let input = inputs.next().ok_or_else(|| DataFusionError::Internal("GapFill: no input".into()))?;
        let schema = Arc::new(node.schema.as_arrow().clone());
        Ok(Some(Arc::new(GapFillExec::new(input, inputs.next(), node.params.clone(), buckets, schema))))
    }
}

fn stride_ns(v: &ScalarValue) -> Result<i64> {
    let ns = match v {
        ScalarValue::IntervalMonthDayNano(Some(iv)) if iv.months == 0 => {
            i64::from(iv.days).checked_mul(86_400_000_000_000).and_then(|d| d.checked_add(iv.nanoseconds))
        }
        ScalarValue::IntervalDayTime(Some(iv)) => i64::from(iv.days)
            .checked_mul(86_400_000_000_000)
            .and_then(|d| d.checked_add(i64::from(iv.milliseconds) * 1_000_000)),
        ScalarValue::DurationNanosecond(Some(d)) => Some(*d),
        _ => None,
    };
    match ns {
        Some(ns) if ns > 0 => Ok(ns),
        _ => Err(plan(format!("date_bin_gapfill's interval must be positive and without months or years, got {v}"))),
    }
}

fn timestamp_ns(v: &ScalarValue, what: &str) -> Result<i64> {
    match v.cast_to(&DataType::Timestamp(TimeUnit::Nanosecond, None)) {
        Ok(ScalarValue::TimestampNanosecond(Some(ns), _)) => Ok(ns),
        _ => Err(plan(format!("date_bin_gapfill: the {what} must be a timestamp, got {v}"))),
    }
}

/// The buckets of a range: `first`, `first + stride`, … (`count` of them).
#[derive(Debug, Clone, Copy)]
struct Buckets {
    stride: i64,
    origin: i64,
    first: i64,
    count: u64,
}

impl Buckets {
    /// The buckets that hold a time in `[start, end)`.
    fn new(stride: i64, origin: i64, start: i64, end: i64) -> Result<Self> {
        if end <= start {
            return Ok(Buckets { stride, origin, first: 0, count: 0 });
        }
        let bin = |t: i64| -> i128 {
            let off = i128::from(t) - i128::from(origin);
            i128::from(origin) + off.div_euclid(i128::from(stride)) * i128::from(stride)
        };
        let (first, last) = (bin(start), bin(end - 1));
        let first = i64::try_from(first).map_err(|_| plan("date_bin_gapfill: the range starts before 1677".into()))?;
        let count = u64::try_from((last - i128::from(first)) / i128::from(stride) + 1).unwrap_or(u64::MAX);
        Ok(Buckets { stride, origin, first, count })
    }

    /// The bucket index of a bucket start (negative before the range), or `None` if `t` is not one.
    fn index(&self, t: i64) -> Option<i64> {
        let off = i128::from(t) - i128::from(self.first);
        (off % i128::from(self.stride) == 0).then(|| i64::try_from(off / i128::from(self.stride)).ok()).flatten()
    }

    fn start(&self, k: u64) -> i64 {
        self.first + (k as i64) * self.stride
    }
}

/// Fills the gaps of an aggregate's output (see the module documentation).
#[derive(Debug)]
pub(crate) struct GapFillExec {
    input: Arc<dyn ExecutionPlan>,
    prior: Option<Arc<dyn ExecutionPlan>>,
    params: Params,
    buckets: Buckets,
    properties: Arc<PlanProperties>,
}

impl GapFillExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        prior: Option<Arc<dyn ExecutionPlan>>,
        params: Params,
        buckets: Buckets,
        schema: SchemaRef,
    ) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        GapFillExec { input, prior, params, buckets, properties }
    }
}

impl DisplayAs for GapFillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.buckets;
        write!(f, "GapFillExec: buckets={} from {} every {}ns", b.count, b.first, b.stride)?;
        if b.origin != 0 {
            write!(f, " (origin {})", b.origin)?;
        }
        Ok(())
    }
}

impl ExecutionPlan for GapFillExec {
    fn name(&self) -> &'static str {
        "GapFillExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        std::iter::once(&self.input).chain(self.prior.as_ref()).collect()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        InputDistributionRequirements::new(vec![Distribution::SinglePartition; self.children().len()])
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false; self.children().len()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn datafusion::physical_expr::PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let mut it = children.into_iter();
        let input = it.next().ok_or_else(|| DataFusionError::Internal("GapFillExec: no input".into()))?;
        Ok(Arc::new(GapFillExec::new(input, it.next(), self.params.clone(), self.buckets, self.schema())))
    }

    fn execute(&self, _partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(0, context.clone())?;
        let input_schema = self.input.schema();
        let prior = self.prior.clone();
        let (params, buckets, schema) = (self.params.clone(), self.buckets, self.schema());
        let out = schema.clone();
        let fut = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let rows = concat_batches(&input_schema, &batches)?;
            let mut filler = Filler::new(&params, buckets, rows)?;
            if let Some(prior) = prior.filter(|_| filler.needs_prior()) {
                let prior_schema = prior.schema();
                let batches: Vec<RecordBatch> = prior.execute(0, context)?.try_collect().await?;
                filler.set_prior(concat_batches(&prior_schema, &batches)?)?;
            }
            filler.finish(&out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, futures::stream::once(fut))))
    }
}

/// The aggregated rows laid out by group and bucket.
struct Filler<'a> {
    params: &'a Params,
    buckets: Buckets,
    rows: RecordBatch,
    /// Per group (sorted by key): a row holding its key, and the row of each bucket.
    groups: Vec<(Option<u32>, Vec<Option<u32>>)>,
    converter: Option<RowConverter>,
    index: HashMap<OwnedRow, usize>,
    /// Per group and filled column: the last non-null value before the range
    /// (bucket index, row in `prior`).
    before: Vec<Vec<Option<(i64, u32)>>>,
    prior: Option<RecordBatch>,
}

impl<'a> Filler<'a> {
    fn new(params: &'a Params, buckets: Buckets, rows: RecordBatch) -> Result<Self> {
        if buckets.count > MAX_ROWS {
            return Err(too_many(buckets.count, 1, buckets.count));
        }
        let key_cols: Vec<usize> = (0..params.groups).filter(|i| *i != params.time).collect();
        let times = ns(rows.column(params.time))?;
        let mut groups: Vec<(Option<u32>, Vec<Option<u32>>)> = Vec::new();
        let count = usize::try_from(buckets.count).unwrap_or(usize::MAX);
        let mut converter = None;
        let mut index = HashMap::new();
        let mut row_group: Vec<usize> = Vec::with_capacity(rows.num_rows());
        if key_cols.is_empty() {
            // One group, even without rows: every bucket of the range.
            groups.push((None, vec![None; count]));
        } else {
            let fields = key_cols.iter().map(|i| SortField::new(rows.schema().field(*i).data_type().clone()));
            let conv = RowConverter::new(fields.collect())?;
            let keys = conv.convert_columns(&key_cols.iter().map(|i| rows.column(*i).clone()).collect::<Vec<_>>())?;
            let mut order: Vec<(OwnedRow, u32)> = Vec::new();
            for i in 0..rows.num_rows() {
                let key = keys.row(i).owned();
                let g = *index.entry(key.clone()).or_insert_with(|| {
                    order.push((key, i as u32));
                    order.len() - 1
                });
                row_group.push(g);
            }
            // Groups in key order, so output does not depend on hashing.
            let mut sorted: Vec<usize> = (0..order.len()).collect();
            sorted.sort_by(|a, b| order[*a].0.cmp(&order[*b].0));
            let mut rank = vec![0; order.len()];
            for (r, g) in sorted.iter().enumerate() {
                rank[*g] = r;
            }
            for v in index.values_mut().chain(row_group.iter_mut()) {
                *v = rank[*v];
            }
            let total = (order.len() as u64).saturating_mul(buckets.count);
            if total > MAX_ROWS {
                return Err(too_many(total, order.len(), buckets.count));
            }
            groups = sorted.iter().map(|g| (Some(order[*g].1), vec![None; count])).collect();
            converter = Some(conv);
        }
        let mut filler = Filler { params, buckets, rows, groups, converter, index, before: Vec::new(), prior: None };
        for i in 0..filler.rows.num_rows() {
            let g = row_group.get(i).copied().unwrap_or(0);
            let Some(t) = times.get(i).copied().flatten() else { continue };
            if let Some(k) = buckets.index(t).filter(|k| *k >= 0 && (*k as u64) < buckets.count) {
                filler.groups[g].1[k as usize] = Some(i as u32);
            }
        }
        filler.before = vec![vec![None; params.fills.len()]; filler.groups.len()];
        Ok(filler)
    }

    /// The group of each row of `prior` (`None`: a group without rows in the range).
    fn prior_groups(&self, prior: &RecordBatch) -> Result<Vec<Option<usize>>> {
        let Some(conv) = &self.converter else { return Ok(vec![Some(0); prior.num_rows()]) };
        let cols: Vec<ArrayRef> =
            (0..self.params.groups).filter(|c| *c != self.params.time).map(|c| prior.column(c).clone()).collect();
        let keys = conv.convert_columns(&cols)?;
        Ok((0..prior.num_rows()).map(|i| self.index.get(&keys.row(i).owned()).copied()).collect())
    }

    /// Whether some group's filled column has nothing in its first bucket.
    fn needs_prior(&self) -> bool {
        self.params.fills.iter().enumerate().filter(|(_, f)| **f != Fill::Null).any(|(j, _)| {
            let col = self.rows.column(self.params.groups + j);
            self.groups
                .iter()
                .any(|(_, slots)| slots.first().is_some_and(|s| s.is_none_or(|i| col.is_null(i as usize))))
        })
    }

    /// Reads the last non-null value of each group and filled column before the range.
    fn set_prior(&mut self, prior: RecordBatch) -> Result<()> {
        let times = ns(prior.column(self.params.time))?;
        let groups = self.prior_groups(&prior)?;
        for (i, (t, g)) in times.iter().zip(groups).enumerate() {
            let (Some(t), Some(g)) = (t, g) else { continue };
            // Rows before the range, up to its start: in earlier buckets, or early in the first one.
            let Some(k) = self.buckets.index(*t).filter(|k| *k <= 0) else { continue };
            for (j, fill) in self.params.fills.iter().enumerate() {
                let valid = prior.column(self.params.groups + j).is_valid(i);
                if *fill != Fill::Null && valid && self.before[g][j].is_none_or(|(kb, _)| kb < k) {
                    self.before[g][j] = Some((k, i as u32));
                }
            }
        }
        self.prior = Some(prior);
        Ok(())
    }

    fn finish(self, schema: &SchemaRef) -> Result<RecordBatch> {
        let p = self.params;
        let count = self.buckets.count as usize;
        let n = self.groups.len() * count;
        let rows_len = self.rows.num_rows() as u32;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (c, field) in schema.fields().iter().enumerate() {
            let col = if c == p.time {
                let times: Vec<i64> = (0..n).map(|i| self.buckets.start((i % count.max(1)) as u64)).collect();
                cast(&TimestampNanosecondArray::from(times), field.data_type())?
            } else if c < p.groups {
                let idx: UInt32Array =
                    self.groups.iter().flat_map(|(key, _)| std::iter::repeat_n(*key, count)).collect();
                take(self.rows.column(c), &idx, None)?
            } else {
                let j = c - p.groups;
                let own = self.rows.column(c);
                let exact: UInt32Array = self.groups.iter().flat_map(|(_, s)| s.iter().copied()).collect();
                match p.fills[j] {
                    Fill::Null => take(own, &exact, None)?,
                    Fill::Locf => {
                        // Rows of the prior batch follow the input's in `all`.
                        let all = match &self.prior {
                            Some(prior) => {
                                datafusion::arrow::compute::concat(&[own.as_ref(), prior.column(c).as_ref()])?
                            }
                            None => own.clone(),
                        };
                        let mut idx = Vec::with_capacity(n);
                        for (g, (_, slots)) in self.groups.iter().enumerate() {
                            let mut last = self.before[g][j].map(|(_, i)| rows_len + i);
                            for s in slots {
                                if let Some(i) = s.filter(|i| own.is_valid(*i as usize)) {
                                    last = Some(i);
                                }
                                idx.push(last);
                            }
                        }
                        take(&all, &UInt32Array::from(idx), None)?
                    }
                    Fill::Interpolate => self.interpolate(c, j, &exact, field.data_type())?,
                }
            };
            columns.push(col);
        }
        Ok(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }

    /// Column `c` (aggregate `j`): its own value where there is one, else the
    /// straight line between the group's neighbouring values, by bucket.
    fn interpolate(&self, c: usize, j: usize, exact: &UInt32Array, data_type: &DataType) -> Result<ArrayRef> {
        let own = self.rows.column(c);
        let values = cast(own, &DataType::Float64)?;
        let values = values.as_primitive::<arrow_array::types::Float64Type>();
        let prior_values = match &self.prior {
            Some(p) => Some(cast(p.column(c), &DataType::Float64)?),
            None => None,
        };
        let prior_values = prior_values.as_ref().map(|a| a.as_primitive::<arrow_array::types::Float64Type>());
        let mut filled: Vec<Option<f64>> = Vec::with_capacity(exact.len());
        for (g, (_, slots)) in self.groups.iter().enumerate() {
            // Known points (bucket index, value), the one before the range first.
            let mut known: Vec<(i64, f64)> = Vec::new();
            if let (Some((k, i)), Some(pv)) = (self.before[g][j], prior_values) {
                known.push((k, pv.value(i as usize)));
            }
            for (k, s) in slots.iter().enumerate() {
                if let Some(i) = s.filter(|i| values.is_valid(*i as usize)) {
                    known.push((k as i64, values.value(i as usize)));
                }
            }
            let mut next = 0;
            for k in 0..slots.len() as i64 {
                while next < known.len() && known[next].0 < k {
                    next += 1;
                }
                let v = match (next.checked_sub(1).map(|p| known[p]), known.get(next)) {
                    (_, Some(&(k1, v1))) if k1 == k => Some(v1),
                    (Some((k0, v0)), Some(&(k1, v1))) => Some(v0 + (v1 - v0) * (k - k0) as f64 / (k1 - k0) as f64),
                    _ => None,
                };
                filled.push(v);
            }
        }
        let is_exact: BooleanArray = exact.iter().map(|i| Some(i.is_some_and(|i| own.is_valid(i as usize)))).collect();
        let rounded: Float64Array =
            filled.into_iter().map(|v| v.map(|v| if data_type.is_floating() { v } else { v.round() })).collect();
        let line = cast(&rounded, data_type)?;
        let own = take(own, exact, None)?;
        Ok(zip(&is_exact, &own, &line)?)
    }
}

fn too_many(total: u64, groups: usize, buckets: u64) -> DataFusionError {
    plan(format!(
        "date_bin_gapfill would return {total} rows ({groups} groups × {buckets} buckets), more than {MAX_ROWS}: \
         use a wider interval or a shorter time range"
    ))
}

/// A time column as nanoseconds.
fn ns(col: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let col = cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
    Ok(col.as_primitive::<TimestampNanosecondType>().iter().collect())
}
