//! `last_values('table')`: the last-value cache as a table function, one row
//! per series with the newest value of every field (see
//! [`crate::Database::last_values`]). Tag `=` / `IN` filters are pushed into
//! the cache's tag index.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::tree_node::Transformed;
use datafusion::datasource::{TableType, provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, TableProviderFilterPushDown, TableScan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};

use super::table::{Pushed, TelemarkTable, string};
use super::{Access, external};
use crate::schema::TIME_COLUMN;
use crate::{Database, TagFilter};

/// The `last_values` table function of a session.
#[derive(Debug)]
pub(crate) struct LastValuesFunction {
    pub(crate) db: Arc<Database>,
    pub(crate) access: Arc<Access>,
}

const USAGE: &str = "last_values takes one argument, the table's name as a string: \
                     last_values('readings') or last_values('database.readings')";

impl TableFunctionImpl for LastValuesFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let name = match args.exprs() {
            [Expr::Literal(v, _)] => string(v),
            _ => None,
        }
        .ok_or_else(|| DataFusionError::Plan(USAGE.into()))?;
        let default = args.session().config().options().catalog.default_schema.clone();
        let (database, table) = match name.split_once('.') {
            Some((d, t)) => (d.to_string(), t.to_string()),
            None => (default, name),
        };
        let schema = self
            .access
            .can_read(&database)
            .then(|| self.db.table_schema(&database, &table))
            .flatten()
            .ok_or_else(|| DataFusionError::Plan(format!("last_values: table '{database}.{table}' not found")))?;
        let inner = TelemarkTable::new(self.db.clone(), &database, &table, schema, false);
        Ok(Arc::new(CacheTable { inner, cells: false }))
    }
}

/// Answers `SELECT <tags>, last(x, time), … FROM t [WHERE <tag filters>]
/// GROUP BY <tags>` ("the latest of each device") from the last-value cache
/// instead of scanning history: the aggregate reads one row per cached
/// value (see [`crate::lastvalue`]) in place of the table's rows, which
/// gives the same answer, since the newest non-null `x` of a group is the
/// newest of its series' newest values. Only exactly that shape is
/// rewritten: every aggregate `last(field, time)` (or `last_value(field
/// ORDER BY time) IGNORE NULLS`), grouping and filters on tags only (no time
/// range), and only while the cache holds every series exactly. `EXPLAIN`
/// shows `LastValueCacheExec`.
#[derive(Debug, Default)]
pub(crate) struct LastValueRewrite;

impl OptimizerRule for LastValueRewrite {
    fn name(&self) -> &str {
        "telemark_last_value_cache"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(&self, plan: LogicalPlan, _config: &dyn OptimizerConfig) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(agg) = &plan else { return Ok(Transformed::no(plan)) };
        let LogicalPlan::TableScan(scan) = agg.input.as_ref() else { return Ok(Transformed::no(plan)) };
        let Some(cells) = rewritable(agg, scan) else { return Ok(Transformed::no(plan)) };
        let scan = TableScan { source: provider_as_source(Arc::new(cells)), ..scan.clone() };
        let agg =
            Aggregate::try_new(Arc::new(LogicalPlan::TableScan(scan)), agg.group_expr.clone(), agg.aggr_expr.clone())?;
        Ok(Transformed::yes(LogicalPlan::Aggregate(agg)))
    }
}

/// The cache's table for `scan`, if `agg` over it has the shape the cache answers.
fn rewritable(agg: &Aggregate, scan: &TableScan) -> Option<CacheTable> {
    if scan.fetch.is_some() || agg.aggr_expr.is_empty() {
        return None;
    }
    let provider = source_as_provider(&scan.source).ok()?;
    let table = provider.downcast_ref::<TelemarkTable>()?;
    if !table.db().last_values_exact() {
        return None;
    }
    for f in &scan.filters {
        let pushed = table.classify(f)?;
        if !pushed.iter().all(|p| matches!(p, Pushed::Tag(..) | Pushed::Present(_))) {
            return None;
        }
    }
    for g in &agg.group_expr {
        match g {
            Expr::Column(c) if table.is_tag(&c.name) => {}
            _ => return None,
        }
    }
    for a in &agg.aggr_expr {
        let a = match a {
            Expr::Alias(alias) => alias.expr.as_ref(),
            a => a,
        };
        let Expr::AggregateFunction(f) = a else { return None };
        let p = &f.params;
        let ordered_by_time = match p.order_by.as_slice() {
            [sort] => sort.asc && matches!(&sort.expr, Expr::Column(c) if c.name == TIME_COLUMN),
            _ => false,
        };
        let on_a_field = match p.args.as_slice() {
            [Expr::Column(c)] => c.name != TIME_COLUMN && !table.is_tag(&c.name),
            _ => false,
        };
        if f.func.name() != "last_value"
            || p.distinct
            || p.filter.is_some()
            || p.null_treatment != Some(NullTreatment::IgnoreNulls)
            || !ordered_by_time
            || !on_a_field
        {
            return None;
        }
    }
    Some(CacheTable { inner: table.reopened(), cells: true })
}

/// A table's last-value cache as a table: one row per series
/// (`last_values(...)`), or one row per cached value (`cells`, what
/// [`LastValueRewrite`] reads). Tag `=` / `IN` / `IS NOT NULL` filters are
/// pushed into the cache's tag index; anything else stays above the scan.
#[derive(Debug)]
pub(crate) struct CacheTable {
    pub(crate) inner: TelemarkTable,
    pub(crate) cells: bool,
}

impl CacheTable {
    /// The tag filters and required tags `e` stands for, if it is only those.
    fn pushed(&self, e: &Expr) -> Option<Vec<Pushed>> {
        let pushed = self.inner.classify(e)?;
        pushed.iter().all(|p| matches!(p, Pushed::Tag(..) | Pushed::Present(_))).then_some(pushed)
    }
}

#[async_trait]
impl TableProvider for CacheTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        if self.cells { TableType::Base } else { TableType::Temporary }
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.pushed(f) {
                Some(_) => TableProviderFilterPushDown::Exact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut tags: Vec<TagFilter> = Vec::new();
        let mut required: Vec<String> = Vec::new();
        for p in filters.iter().filter_map(|f| self.pushed(f)).flatten() {
            match p {
                // Two filters on one tag: keep the intersection.
                Pushed::Tag(tag, values) => match tags.iter_mut().find(|t| t.tag == tag) {
                    Some(t) => t.values.retain(|v| values.contains(v)),
                    None => tags.push(TagFilter { tag, values }),
                },
                Pushed::Present(tag) => required.push(tag),
                Pushed::From(_) | Pushed::Until(_) | Pushed::Field(_) => {}
            }
        }
        let arrow = self.inner.schema();
        let all: Vec<usize> = (0..arrow.fields().len()).collect();
        let wanted = projection.unwrap_or(&all);
        let mut names: Vec<String> =
            wanted.iter().filter_map(|&i| arrow.fields().get(i).map(|f| f.name().clone())).collect();
        // `COUNT(*)` projects nothing: read `time` for the row count, then drop it.
        if names.is_empty() {
            names.push(TIME_COLUMN.to_string());
        }
        let (database, table) = self.inner.names();
        let batch = self
            .inner
            .db()
            .read_last_values(database, table, &tags, &required, Some(&names), self.cells)
            .map_err(external)?;
        let batch = if wanted.is_empty() { batch.project(&[])? } else { batch };
        Ok(Arc::new(LastValueCacheExec::new(format!("{database}.{table}"), tags, required, batch)))
    }
}

/// The rows the last-value cache gave, for `EXPLAIN` to name.
#[derive(Debug)]
struct LastValueCacheExec {
    table: String,
    filters: Vec<TagFilter>,
    required: Vec<String>,
    batch: RecordBatch,
    properties: Arc<PlanProperties>,
}

impl LastValueCacheExec {
    fn new(table: String, filters: Vec<TagFilter>, required: Vec<String>, batch: RecordBatch) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(batch.schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        LastValueCacheExec { table, filters, required, batch, properties }
    }
}

impl DisplayAs for LastValueCacheExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LastValueCacheExec: table={}", self.table)?;
        for tf in &self.filters {
            write!(f, ", {} IN ({})", tf.tag, tf.values.join(", "))?;
        }
        for t in &self.required {
            write!(f, ", {t} IS NOT NULL")?;
        }
        write!(f, ", values={}", self.batch.num_rows())
    }
}

impl ExecutionPlan for LastValueCacheExec {
    fn name(&self) -> &'static str {
        "LastValueCacheExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan_methods!();

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let batch = self.batch.clone();
        Ok(Box::pin(RecordBatchStreamAdapter::new(batch.schema(), futures::stream::once(async move { Ok(batch) }))))
    }
}
