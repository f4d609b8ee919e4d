//! SQL over Telemark tables through Apache DataFusion (feature `sql`).
//!
//! Every database of the data directory is a DataFusion schema inside the
//! catalog `telemark`, so `database.table` always resolves; a session opened
//! for one database also resolves a bare `table`. Each table's scan pushes
//! time ranges and tag `=` / `IN` filters into the engine (exactly), along
//! with the projection and the limit; `EXPLAIN` shows them on
//! `TelemarkScanExec`.
//!
//! Time-series functions beyond DataFusion's own (`date_bin`, `now()`,
//! interval arithmetic, `first_value`/`last_value(x ORDER BY time)`):
//! `time_bucket(interval, time)` (an alias of `date_bin`), and
//! `last(x, time)` / `first(x, time)`, the value of `x` at the latest /
//! earliest `time` in each group; and the table function
//! `last_values('table')`, the newest value of every field per series from
//! the last-value cache ([`crate::Database::last_values`]); gap filling
//! (`date_bin_gapfill`, `locf`, `interpolate`: see `gapfill.rs`); queries over
//! coarse buckets answered from rollup tables ([`crate::rollup`]). A query for the
//! latest of each device (`last(field, time)` grouped and filtered by tags
//! only) reads that cache instead of scanning history (`LastValueCacheExec`).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use telemark_engine::{Database, Options, WriteBatch, query::QueryEngine};
//! let dir = tempfile::tempdir()?;
//! let db = Arc::new(Database::open(dir.path(), Options::default())?);
//! let mut b = WriteBatch::new("readings");
//! b.row(1_000_000_000).tag("device", "a").field("temp", 20.5);
//! b.row(2_000_000_000).tag("device", "a").field("temp", 21.5);
//! let _ = db.write("fleet", &b)?;
//! let sql = QueryEngine::new(db);
//! let batches = sql.sql(Some("fleet"), "SELECT last(temp, time) AS t FROM readings WHERE device = 'a'").await?.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(()) }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(demo()).unwrap();
//! ```

/// The `ExecutionPlan` methods of a leaf plan (no children, no
/// expressions), written once for every plan of ours.
macro_rules! leaf_plan_methods {
    () => {
        fn children(&self) -> Vec<&std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            vec![]
        }

        fn apply_expressions(
            &self,
            _f: &mut dyn FnMut(
                &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>,
            ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion>,
        ) -> datafusion::error::Result<datafusion::common::tree_node::TreeNodeRecursion> {
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        }

        fn replace_children(
            self: std::sync::Arc<Self>,
            _children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
            _options: datafusion::physical_plan::ReplaceChildrenOptions,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            Ok(self)
        }

        fn with_new_children(
            self: std::sync::Arc<Self>,
            children: Vec<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>>,
        ) -> datafusion::error::Result<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
            self.replace_children(
                children,
                datafusion::physical_plan::ReplaceChildrenOptions::new(
                    datafusion::physical_plan::ChildrenPropertiesMode::Recompute,
                ),
            )
        }
    };
}

mod catalog;
mod convert;
mod delete;
mod functions;
mod gapfill;
mod last;
mod rollup;
mod runs;
mod series_agg;
mod table;

use std::sync::Arc;

use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::error::DataFusionError;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::Database;

pub use convert::record_batch_to_write;
pub use table::TelemarkScanExec;

/// Which databases a session may read and write. Databases it may not read
/// are invisible to it: absent from the catalog, `SHOW TABLES` and
/// `information_schema`, so a query naming one fails as if it did not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    /// Databases the session reads; `None` = all.
    pub read: Option<std::collections::BTreeSet<String>>,
    /// Databases the session writes (`INSERT INTO`); `None` = all.
    pub write: Option<std::collections::BTreeSet<String>>,
}

impl Access {
    /// Reads and writes everything.
    pub fn all() -> Self {
        Access { read: None, write: None }
    }

    /// May the session read `database`?
    pub fn can_read(&self, database: &str) -> bool {
        self.read.as_ref().is_none_or(|s| s.contains(database))
    }

    /// May the session write `database`?
    pub fn can_write(&self, database: &str) -> bool {
        self.write.as_ref().is_none_or(|s| s.contains(database))
    }
}

/// The configuration and functions every session starts from.
fn base_state(partitions: Option<usize>) -> SessionState {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG, "public");
    if let Some(n) = partitions {
        config = config.with_target_partitions(n);
    }
    // Plain Utf8 for SQL string types: Grafana and other Arrow clients do not read Utf8View.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rule(Arc::new(last::LastValueRewrite))
        .with_optimizer_rule(Arc::new(rollup::RollupRewrite))
        .with_analyzer_rule(Arc::new(gapfill::GapFillRewrite))
        .with_query_planner(Arc::new(gapfill::Planner))
        .with_physical_optimizer_rule(Arc::new(series_agg::SeriesAggregate))
        .build();
    let ctx = SessionContext::new_with_state(state);
    functions::register(&ctx);
    gapfill::register(&ctx);
    ctx.state()
}

/// The name of the one catalog; databases are its schemas.
pub const CATALOG: &str = "telemark";

/// Runs SQL against a [`Database`].
#[derive(Clone)]
pub struct QueryEngine {
    db: Arc<Database>,
    partitions: Option<usize>,
    /// Configuration and functions, built once: a session is a copy of it
    /// with its own catalog (building one from scratch registers hundreds of
    /// functions, a large part of a small query's cost).
    base: SessionState,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").field("db", &self.db).field("partitions", &self.partitions).finish()
    }
}

impl QueryEngine {
    /// A query engine over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        QueryEngine { db, partitions: None, base: base_state(None) }
    }

    /// Runs scans and operators in `n` parallel partitions (default: one per core).
    pub fn with_partitions(mut self, n: usize) -> Self {
        self.partitions = Some(n.max(1));
        self.base = base_state(self.partitions);
        self
    }

    /// The database it queries.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// A DataFusion session whose default schema is `database` (bare table
    /// names resolve there), with `information_schema` enabled and the
    /// time-series functions registered.
    pub fn context(&self, database: Option<&str>) -> SessionContext {
        self.context_with_access(database, Access::all())
    }

    /// Like [`QueryEngine::context`], limited to the databases `access` allows.
    pub fn context_with_access(&self, database: Option<&str>, access: Access) -> SessionContext {
        // A copy of the base (a builder would register every function again),
        // with a catalog list of its own: the base's is shared by every copy.
        let mut state = self.base.clone();
        state.register_catalog_list(Arc::new(MemoryCatalogProviderList::new()));
        state.config_mut().options_mut().catalog.default_schema = database.unwrap_or("public").to_string();
        let ctx = SessionContext::new_with_state(state);
        let access = Arc::new(access);
        ctx.register_catalog(CATALOG, Arc::new(catalog::TelemarkCatalog::new(self.db.clone(), access.clone())));
        ctx.register_udtf("last_values", Arc::new(last::LastValuesFunction { db: self.db.clone(), access }));
        ctx
    }

    /// Plans `sql` in a session for `database`.
    pub async fn sql(&self, database: Option<&str>, sql: &str) -> Result<DataFrame, DataFusionError> {
        Self::plan(&self.context(database), sql).await
    }

    /// Plans `sql` in `ctx`, accepting queries, `EXPLAIN`, `INSERT INTO` and
    /// `DELETE FROM … WHERE <tag conditions> [AND <time range>]` only.
    /// DDL (`CREATE EXTERNAL TABLE` would read server files), `COPY … TO`
    /// (would write them) and `SET`-style statements are refused: schemas
    /// grow on write, and sessions are not configurable by clients.
    pub async fn plan(ctx: &SessionContext, sql: &str) -> Result<DataFrame, DataFusionError> {
        use datafusion::logical_expr::LogicalPlan;
        let plan = ctx.state().create_logical_plan(sql).await?;
        let refused = match &plan {
            LogicalPlan::Ddl(ddl) => Some(format!(
                "{} is not supported: Telemark creates databases, tables and columns when data is written",
                ddl.name()
            )),
            LogicalPlan::Copy(_) => {
                Some("COPY is not supported: it would read or write files on the server".to_string())
            }
            LogicalPlan::Statement(st) => Some(format!("{} statements are not supported", st.name())),
            _ => None,
        };
        if let Some(reason) = refused {
            return Err(DataFusionError::Plan(reason));
        }
        ctx.execute_logical_plan(plan).await
    }
}

impl QueryEngine {
    /// Runs a read-only query in `database` as of `at_ms` (ms since the
    /// epoch): `now()` in it returns that instant, so an alert rule can
    /// judge a window that ends a delay before the wall clock. Anything but
    /// a query (`INSERT`, `DELETE`, DDL, `COPY`, statements) is refused.
    pub async fn query_at(
        &self,
        database: &str,
        sql: &str,
        at_ms: i64,
    ) -> Result<Vec<arrow_array::RecordBatch>, DataFusionError> {
        use datafusion::logical_expr::LogicalPlan;
        let ctx = self.context(Some(database));
        let mut state = ctx.state();
        state.execution_props_mut().query_execution_start_time = chrono::DateTime::from_timestamp_millis(at_ms);
        let plan = state.create_logical_plan(sql).await?;
        if matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) | LogicalPlan::Statement(_))
        {
            return Err(DataFusionError::Plan("only a query (SELECT) can be evaluated here".into()));
        }
        DataFrame::new(state, plan).collect().await
    }
}

/// Finds a Telemark engine error inside a DataFusion error, if there is one.
pub fn engine_error(e: &DataFusionError) -> Option<&crate::Error> {
    match e {
        DataFusionError::External(inner) => inner.downcast_ref::<crate::Error>(),
        DataFusionError::Context(_, inner) => engine_error(inner),
        DataFusionError::Shared(inner) => engine_error(inner),
        _ => None,
    }
}

pub(crate) fn external(e: crate::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a test failure")]

    use super::{Access, QueryEngine};
    use crate::{Database, Options, WriteBatch};
    use std::sync::Arc;

    /// Sessions are copies of one base: each must keep its own catalog and
    /// access, whatever order they are made and used in.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sessions_copied_from_the_base_keep_their_own_access() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::open(dir.path(), Options::default()).unwrap());
        for database in ["a", "b"] {
            let mut w = WriteBatch::new("t");
            w.row(1).tag("d", "x").field("v", 1.0);
            let _ = db.write(database, &w).unwrap();
        }
        let engine = QueryEngine::new(db);
        let everything = engine.context(Some("a"));
        let only_a = engine.context_with_access(
            Some("a"),
            Access { read: Some(["a".to_string()].into()), write: Some(Default::default()) },
        );
        let everything_again = engine.context(Some("b"));
        let count = |ctx: &datafusion::prelude::SessionContext, sql: &str| {
            let ctx = ctx.clone();
            let sql = sql.to_string();
            async move { QueryEngine::plan(&ctx, &sql).await.map(|_| ()) }
        };
        assert!(count(&only_a, "SELECT * FROM b.t").await.is_err(), "`b` is hidden from a session reading `a` only");
        count(&only_a, "SELECT * FROM t").await.unwrap();
        count(&everything, "SELECT * FROM b.t").await.unwrap();
        count(&everything_again, "SELECT * FROM t").await.unwrap();
        count(&everything_again, "SELECT * FROM a.t").await.unwrap();
        let names = |ctx: &datafusion::prelude::SessionContext| {
            ctx.catalog(super::CATALOG).unwrap().schema_names().into_iter().collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(names(&only_a), ["a".to_string()].into());
        assert!(names(&everything).contains("b") && names(&everything_again).contains("a"));
    }
}
