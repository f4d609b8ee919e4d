//! Partial aggregation by runs: the first phase of a `GROUP BY` over tags
//! (and time buckets) without a hash table.
//!
//! A scan returns a table series by series, each series sorted by time, so
//! rows of one group (one series, or one series and bucket) arrive as runs.
//! DataFusion's partial aggregate hashes the group key of every row anyway:
//! for a `GROUP BY name, fleet, model` that is three strings per row.
//! [`SeriesAggregate`] replaces such a partial aggregate with
//! [`SeriesAggregateExec`], which finds where the key changes (one vectorized
//! comparison per key column) and numbers the runs in order, so DataFusion's
//! own group accumulators run without hashing, emitting one row of partial
//! state per run. `count`, `sum`, `avg`, `min` and `max` of numbers skip even
//! the group index per row: they fold each run's slice at once. An argument
//! of tags alone (`avg(CAST(capacity AS DOUBLE))`) is evaluated once per
//! series run instead of once per row.
//!
//! Correctness does not rest on the runs being whole groups: a partial
//! aggregate may emit a group more than once, and the final aggregate above it
//! merges every partial row of a group. Runs only decide how much work is
//! saved, so the rule takes groupings that follow series (tags, and
//! expressions of time such as `date_bin`) straight over a Telemark scan.

use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, PrimitiveArray, RecordBatch, UInt32Array};
use arrow_schema::SchemaRef;
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{concat, sum, take, take_record_batch};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
    RecordBatchStream, SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};

use super::runs::Changes;
use super::table::{ScanColumn, TelemarkScanExec};

/// The physical optimizer rule: partial aggregates grouped by series-following
/// keys over a Telemark scan become [`SeriesAggregateExec`].
#[derive(Debug, Default)]
pub(crate) struct SeriesAggregate;

impl PhysicalOptimizerRule for SeriesAggregate {
    fn optimize(&self, plan: Arc<dyn ExecutionPlan>, _config: &ConfigOptions) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(agg) = node.downcast_ref::<AggregateExec>() else { return Ok(Transformed::no(node)) };
            match SeriesAggregateExec::replacing(agg)? {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .data()
    }

    fn name(&self) -> &str {
        "series_aggregate"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Where column `i` of `plan`'s output comes from, followed through the
/// operators that pass columns along unchanged down to a Telemark scan.
fn origin(plan: &Arc<dyn ExecutionPlan>, i: usize) -> Option<ScanColumn> {
    if let Some(scan) = plan.downcast_ref::<TelemarkScanExec>() {
        return scan.column(i);
    }
    if let Some(p) = plan.downcast_ref::<ProjectionExec>() {
        let c = p.expr().get(i)?.expr.downcast_ref::<Column>()?;
        return origin(p.input(), c.index());
    }
    if let Some(f) = plan.downcast_ref::<FilterExec>() {
        let j = match f.projection() {
            Some(p) => *p.get(i)?,
            None => i,
        };
        return origin(f.input(), j);
    }
    let passes_through = plan.downcast_ref::<RepartitionExec>().is_some();
    match plan.children().as_slice() {
        [child] if passes_through => origin(child, i),
        _ => None,
    }
}

/// Does grouping by `expr` keep each series' rows in long runs? A tag does
/// (constant per series); an expression of time alone, such as a bucket, does
/// (a series is sorted by time); time itself does not (a run per row).
fn follows_series(expr: &Arc<dyn PhysicalExpr>, input: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return origin(input, c.index()) == Some(ScanColumn::Tag);
    }
    let columns = collect_columns(expr);
    !columns.is_empty() && columns.iter().all(|c| origin(input, c.index()) == Some(ScanColumn::Time))
}

/// The tag columns an aggregate argument reads, when it is worth evaluating
/// once per series rather than per row: an expression (not a bare column) of
/// tags alone, without volatile functions, such as `CAST(capacity AS DOUBLE)`.
fn series_constant(expr: &Arc<dyn PhysicalExpr>, input: &Arc<dyn ExecutionPlan>) -> Option<Vec<Column>> {
    if expr.downcast_ref::<Column>().is_some() || is_volatile(expr) {
        return None;
    }
    let columns: Vec<Column> = collect_columns(expr).into_iter().collect();
    let tags_only = !columns.is_empty() && columns.iter().all(|c| origin(input, c.index()) == Some(ScanColumn::Tag));
    tags_only.then_some(columns)
}

/// A partial aggregate that aggregates runs of equal group keys, with the
/// same output as the [`AggregateExec`] it replaces.
#[derive(Debug)]
pub(crate) struct SeriesAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    group: Vec<(Arc<dyn PhysicalExpr>, String)>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Per aggregate, per argument: is it evaluated once per series run?
    per_series: Vec<Vec<bool>>,
    /// The tag columns those arguments read: runs also split where one changes.
    series_columns: Vec<Arc<dyn PhysicalExpr>>,
    properties: Arc<PlanProperties>,
}

impl SeriesAggregateExec {
    /// The replacement for `agg`, if it is a partial aggregate this can run.
    fn replacing(agg: &AggregateExec) -> Result<Option<Self>> {
        let group = agg.group_expr();
        let simple = *agg.mode() == AggregateMode::Partial
            && group.is_single()
            && !group.expr().is_empty()
            && agg.limit_options().is_none()
            && agg.filter_expr().iter().all(Option::is_none)
            && agg
                .aggr_expr()
                .iter()
                .all(|a| !a.is_distinct() && a.order_bys().is_empty() && a.groups_accumulator_supported());
        if !simple || !group.expr().iter().all(|(e, _)| follows_series(e, agg.input())) {
            return Ok(None);
        }
        Ok(Some(Self::new(agg.input().clone(), group.expr().to_vec(), agg.aggr_expr().to_vec(), agg.schema())))
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        group: Vec<(Arc<dyn PhysicalExpr>, String)>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        schema: SchemaRef,
    ) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        let mut series_columns: Vec<Column> = Vec::new();
        let per_series = aggregates
            .iter()
            .map(|a| {
                a.expressions()
                    .iter()
                    .map(|e| match series_constant(e, &input) {
                        Some(columns) => {
                            for c in columns {
                                if !series_columns.contains(&c) {
                                    series_columns.push(c);
                                }
                            }
                            true
                        }
                        None => false,
                    })
                    .collect()
            })
            .collect();
        let series_columns = series_columns.into_iter().map(|c| Arc::new(c) as Arc<dyn PhysicalExpr>).collect();
        SeriesAggregateExec { input, group, aggregates, per_series, series_columns, properties }
    }
}

impl DisplayAs for SeriesAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let group: Vec<String> = self
            .group
            .iter()
            .map(|(e, name)| match e.to_string() {
                shown if shown == *name => shown,
                shown => format!("{shown} as {name}"),
            })
            .collect();
        let aggs: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        write!(f, "SeriesAggregateExec: mode=Partial, runs of gby=[{}], aggr=[{}]", group.join(", "), aggs.join(", "))?;
        if !self.series_columns.is_empty() {
            let columns: Vec<String> = self.series_columns.iter().map(ToString::to_string).collect();
            write!(f, ", once per run of [{}]", columns.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SeriesAggregateExec {
    fn name(&self) -> &'static str {
        "SeriesAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut exprs = self.group.iter().map(|(e, _)| e.clone()).collect::<Vec<_>>();
        exprs.extend(self.aggregates.iter().flat_map(|a| a.expressions()));
        let mut recursion = TreeNodeRecursion::Continue;
        for e in &exprs {
            recursion = f(e)?;
            if recursion == TreeNodeRecursion::Stop {
                break;
            }
        }
        Ok(recursion)
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(self: Arc<Self>, children: Vec<Arc<dyn ExecutionPlan>>) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal("SeriesAggregateExec: no input".into()))?;
        Ok(Arc::new(SeriesAggregateExec::new(input, self.group.clone(), self.aggregates.clone(), self.schema())))
    }

    fn execute(&self, partition: usize, context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        Ok(Box::pin(RunStream {
            input,
            schema: self.schema(),
            group: self.group.iter().map(|(e, _)| e.clone()).collect(),
            args: self.aggregates.iter().map(|a| a.expressions()).collect(),
            per_series: self.per_series.clone(),
            series_columns: self.series_columns.clone(),
            accumulators: self
                .aggregates
                .iter()
                .map(|a| match RunAggregate::for_aggregate(a, &self.input.schema()) {
                    Some(run) => Ok(Acc::Run(run)),
                    None => a.create_groups_accumulator().map(Acc::Groups),
                })
                .collect::<Result<_>>()?,
            batch_size: context.session_config().batch_size().max(1),
            keys: vec![Vec::new(); self.group.len()],
            last_key: Vec::new(),
            groups: 0,
            done: false,
        }))
    }
}

/// Aggregates one partition of the input: each run of equal keys is a group
/// of DataFusion's own group accumulators (so the partial state is exactly
/// what its hash aggregate would emit), numbered in order instead of hashed.
struct RunStream {
    input: SendableRecordBatchStream,
    schema: SchemaRef,
    group: Vec<Arc<dyn PhysicalExpr>>,
    /// Each aggregate's argument expressions.
    args: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    /// Which arguments are evaluated once per run of `series_columns`.
    per_series: Vec<Vec<bool>>,
    series_columns: Vec<Arc<dyn PhysicalExpr>>,
    accumulators: Vec<Acc>,
    batch_size: usize,
    /// Per key column, the key of each group so far (in pieces, one per input batch).
    keys: Vec<Vec<ArrayRef>>,
    /// The key of the last group, which the next batch may continue.
    last_key: Vec<ScalarValue>,
    groups: usize,
    done: bool,
}

impl RunStream {
    fn consume(&mut self, batch: &RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let keys = self.group.iter().map(|e| e.evaluate(batch)?.into_array(rows)).collect::<Result<Vec<ArrayRef>>>()?;
        let mut changes = Changes::new(rows);
        changes.mark(&keys)?;
        let runs_of_keys = changes.runs();
        // Runs of the keys, split where a tag read by a per-series argument changes.
        let series_runs = if self.series_columns.is_empty() {
            None
        } else {
            let columns =
                self.series_columns.iter().map(|e| e.evaluate(batch)?.into_array(rows)).collect::<Result<Vec<_>>>()?;
            changes.mark(&columns)?;
            Some(changes.runs())
        };
        let runs_of = series_runs.as_ref().unwrap_or(&runs_of_keys);
        // Each run and its group; a group index per row only for DataFusion's accumulators.
        let mut runs: Vec<(Range<usize>, usize)> = Vec::with_capacity(runs_of.len());
        let need_indices = self.accumulators.iter().any(|a| matches!(a, Acc::Groups(_)));
        let mut indices = Vec::with_capacity(if need_indices { rows } else { 0 });
        let mut starts: Vec<u32> = Vec::new();
        let mut key_starts = runs_of_keys.iter().map(|r| r.start).peekable();
        for range in runs_of.iter().cloned() {
            // A run starts a group where the key changes. Runs of keys within a batch
            // differ from their neighbours; only the first may continue the last batch's.
            let key_changes = key_starts.next_if_eq(&range.start).is_some();
            let continues = !key_changes
                || (range.start == 0
                    && self.groups > 0
                    && self
                        .last_key
                        .iter()
                        .zip(&keys)
                        .all(|(k, a)| ScalarValue::try_from_array(a, 0).is_ok_and(|v| v == *k)));
            if !continues {
                self.groups += 1;
                starts
                    .push(u32::try_from(range.start).map_err(|_| DataFusionError::Internal("batch too long".into()))?);
            }
            if need_indices {
                indices.resize(indices.len() + range.len(), self.groups - 1);
            }
            runs.push((range, self.groups - 1));
        }
        let starts = UInt32Array::from(starts);
        for (pieces, column) in self.keys.iter_mut().zip(&keys) {
            pieces.push(take(column.as_ref(), &starts, None)?);
        }
        self.last_key = keys.iter().map(|a| ScalarValue::try_from_array(a, rows - 1)).collect::<Result<_>>()?;
        let per_run = PerRun::new(batch, &runs, self.per_series.iter().flatten().any(|p| *p))?;
        for ((acc, exprs), per_series) in self.accumulators.iter_mut().zip(&self.args).zip(&self.per_series) {
            let values = exprs
                .iter()
                .zip(per_series)
                .map(|(e, once)| match (&per_run, once) {
                    (Some(per_run), true) => per_run.evaluate(e),
                    _ => e.evaluate(batch)?.into_array(rows),
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            match acc {
                Acc::Groups(acc) => acc.update_batch(&values, &indices, None, self.groups)?,
                Acc::Run(acc) => acc.update(&values, &runs, self.groups)?,
            }
        }
        Ok(())
    }

    /// Every group so far, as rows of key and partial state. A run still
    /// open continues as a new group: the final aggregate merges the two.
    fn emit(&mut self) -> Result<RecordBatch> {
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for pieces in &mut self.keys {
            let pieces = std::mem::take(pieces);
            columns.push(concat(&pieces.iter().map(AsRef::as_ref).collect::<Vec<_>>())?);
        }
        for acc in &mut self.accumulators {
            match acc {
                Acc::Groups(acc) => columns.extend(acc.state(EmitTo::All)?),
                Acc::Run(acc) => columns.extend(acc.state()),
            }
        }
        self.groups = 0;
        self.last_key.clear();
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Arguments evaluated once per run: on the first row of each run, then
/// repeated over the run's rows.
struct PerRun {
    /// The first row of every run.
    firsts: RecordBatch,
    /// For every row, its run.
    of_row: UInt32Array,
}

impl PerRun {
    fn new(batch: &RecordBatch, runs: &[(Range<usize>, usize)], wanted: bool) -> Result<Option<Self>> {
        if !wanted {
            return Ok(None);
        }
        let too_long = || DataFusionError::Internal("batch too long".into());
        let firsts =
            runs.iter().map(|(r, _)| u32::try_from(r.start).map_err(|_| too_long())).collect::<Result<Vec<_>>>()?;
        let firsts = take_record_batch(batch, &UInt32Array::from(firsts))?;
        let mut of_row = Vec::with_capacity(batch.num_rows());
        for (k, (range, _)) in runs.iter().enumerate() {
            of_row.resize(of_row.len() + range.len(), u32::try_from(k).map_err(|_| too_long())?);
        }
        Ok(Some(PerRun { firsts, of_row: UInt32Array::from(of_row) }))
    }

    fn evaluate(&self, expr: &Arc<dyn PhysicalExpr>) -> Result<ArrayRef> {
        let once = expr.evaluate(&self.firsts)?.into_array(self.firsts.num_rows())?;
        Ok(take(once.as_ref(), &self.of_row, None)?)
    }
}

/// An aggregate of [`RunStream`].
enum Acc {
    /// DataFusion's own, fed a group index per row.
    Groups(Box<dyn GroupsAccumulator>),
    /// A count, sum, average, minimum or maximum, folded a run at a time.
    Run(RunAggregate),
}

/// Which run aggregate, by its input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RunKind {
    Count,
    SumF64,
    SumI64,
    AvgF64,
    MinF64,
    MaxF64,
    MinI64,
    MaxI64,
}

/// `count(x)`; `sum(x)` and `avg(x)` of floats or integers, summed with
/// Arrow's kernels; `min(x)` and `max(x)` of floats or integers, folded as
/// DataFusion's own accumulator folds them (from `f64::MAX` or `f64::MIN`; a
/// NaN on either side replaces), so an answer never depends on which
/// aggregate the plan chose. Per group: the non-null values seen and the
/// running value. The partial state has DataFusion's layout (checked against
/// the aggregate's state fields when chosen) and nulls: every aggregate but
/// `count` over no values is NULL.
struct RunAggregate {
    kind: RunKind,
    counts: Vec<u64>,
    floats: Vec<f64>,
    ints: Vec<i64>,
}

/// Folds the valid values of `run` into `acc`.
fn fold<T: ArrowPrimitiveType>(run: &PrimitiveArray<T>, acc: &mut T::Native, f: impl Fn(&mut T::Native, T::Native)) {
    match run.nulls().filter(|n| n.null_count() > 0) {
        None => run.values().iter().for_each(|v| f(acc, *v)),
        Some(nulls) => nulls.valid_indices().for_each(|i| f(acc, run.value(i))),
    }
}

/// DataFusion's `min` fold for floats (`min_max.rs`): the new value replaces
/// when it compares less or does not compare (NaN).
fn float_min(acc: &mut f64, v: f64) {
    if matches!(v.partial_cmp(acc), Some(std::cmp::Ordering::Less) | None) {
        *acc = v;
    }
}

/// DataFusion's `max` fold for floats: the new value replaces when it
/// compares greater or does not compare (NaN).
fn float_max(acc: &mut f64, v: f64) {
    if matches!(v.partial_cmp(acc), Some(std::cmp::Ordering::Greater) | None) {
        *acc = v;
    }
}

impl RunAggregate {
    fn for_aggregate(a: &AggregateFunctionExpr, input: &SchemaRef) -> Option<Self> {
        use arrow_schema::DataType::{Float64, Int64, UInt64};
        let [arg]: [Arc<dyn PhysicalExpr>; 1] = a.expressions().try_into().ok()?;
        let input_type = arg.data_type(input).ok()?;
        let state: Vec<_> = a.state_fields().ok()?.iter().map(|f| f.data_type().clone()).collect();
        let kind = match (a.fun().name(), input_type, state.as_slice()) {
            ("count", _, [Int64]) => RunKind::Count,
            ("sum", Float64, [Float64]) => RunKind::SumF64,
            ("sum", Int64, [Int64]) => RunKind::SumI64,
            ("avg", Float64, [UInt64, Float64]) => RunKind::AvgF64,
            ("min", Float64, [Float64]) => RunKind::MinF64,
            ("max", Float64, [Float64]) => RunKind::MaxF64,
            ("min", Int64, [Int64]) => RunKind::MinI64,
            ("max", Int64, [Int64]) => RunKind::MaxI64,
            _ => return None,
        };
        Some(RunAggregate { kind, counts: Vec::new(), floats: Vec::new(), ints: Vec::new() })
    }

    fn update(&mut self, values: &[ArrayRef], runs: &[(Range<usize>, usize)], groups: usize) -> Result<()> {
        let [values] = values else {
            return Err(DataFusionError::Internal("a run aggregate takes one argument".into()));
        };
        self.counts.resize(groups, 0);
        match self.kind {
            RunKind::Count => {}
            RunKind::SumI64 => self.ints.resize(groups, 0),
            RunKind::MinI64 => self.ints.resize(groups, i64::MAX),
            RunKind::MaxI64 => self.ints.resize(groups, i64::MIN),
            RunKind::SumF64 | RunKind::AvgF64 => self.floats.resize(groups, 0.0),
            RunKind::MinF64 => self.floats.resize(groups, f64::MAX),
            RunKind::MaxF64 => self.floats.resize(groups, f64::MIN),
        }
        for (range, g) in runs {
            let run = values.slice(range.start, range.len());
            if let Some(count) = self.counts.get_mut(*g) {
                *count += (run.len() - run.null_count()) as u64;
            }
            let (float, int) = (self.floats.get_mut(*g), self.ints.get_mut(*g));
            match (self.kind, float, int) {
                (RunKind::SumF64 | RunKind::AvgF64, Some(total), _) => {
                    if let Some(s) = sum(run.as_primitive::<Float64Type>()) {
                        *total += s;
                    }
                }
                (RunKind::SumI64, _, Some(total)) => {
                    if let Some(s) = sum(run.as_primitive::<Int64Type>()) {
                        *total = total.wrapping_add(s);
                    }
                }
                (RunKind::MinF64, Some(acc), _) => fold(run.as_primitive::<Float64Type>(), acc, float_min),
                (RunKind::MaxF64, Some(acc), _) => fold(run.as_primitive::<Float64Type>(), acc, float_max),
                (RunKind::MinI64, _, Some(acc)) => fold(run.as_primitive::<Int64Type>(), acc, |a, v| *a = (*a).min(v)),
                (RunKind::MaxI64, _, Some(acc)) => fold(run.as_primitive::<Int64Type>(), acc, |a, v| *a = (*a).max(v)),
                _ => {}
            }
        }
        Ok(())
    }

    /// The partial state of every group so far, and a fresh start.
    fn state(&mut self) -> Vec<ArrayRef> {
        use arrow_array::{Float64Array, Int64Array, UInt64Array};
        let counts = std::mem::take(&mut self.counts);
        let seen = || Some(NullBuffer::from(counts.iter().map(|c| *c > 0).collect::<Vec<bool>>()));
        let mut floats = || Arc::new(Float64Array::new(std::mem::take(&mut self.floats).into(), seen())) as ArrayRef;
        match self.kind {
            RunKind::Count => {
                vec![Arc::new(Int64Array::from_iter_values(
                    counts.iter().map(|c| i64::try_from(*c).unwrap_or(i64::MAX)),
                ))]
            }
            RunKind::SumI64 | RunKind::MinI64 | RunKind::MaxI64 => {
                vec![Arc::new(Int64Array::new(std::mem::take(&mut self.ints).into(), seen()))]
            }
            RunKind::SumF64 | RunKind::MinF64 | RunKind::MaxF64 => vec![floats()],
            RunKind::AvgF64 => {
                let nulls = seen();
                vec![
                    Arc::new(UInt64Array::new(counts.into(), nulls.clone())),
                    Arc::new(Float64Array::new(std::mem::take(&mut self.floats).into(), nulls)),
                ]
            }
        }
    }
}

impl Stream for RunStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            if this.groups >= this.batch_size {
                return Poll::Ready(Some(this.emit()));
            }
            match this.input.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(batch))) => {
                    if let Err(e) = this.consume(&batch) {
                        this.done = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    return Poll::Ready(if this.groups == 0 { None } else { Some(this.emit()) });
                }
            }
        }
    }
}

impl RecordBatchStream for RunStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}
