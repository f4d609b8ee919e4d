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
//! earliest `time` in each group.
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

mod catalog;
mod convert;
mod functions;
mod table;

use std::sync::Arc;

use datafusion::error::DataFusionError;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::Database;

pub use convert::record_batch_to_write;
pub use table::TelemarkScanExec;

/// The name of the one catalog; databases are its schemas.
pub const CATALOG: &str = "telemark";

/// Runs SQL against a [`Database`].
#[derive(Debug, Clone)]
pub struct QueryEngine {
    db: Arc<Database>,
}

impl QueryEngine {
    /// A query engine over `db`.
    pub fn new(db: Arc<Database>) -> Self {
        QueryEngine { db }
    }

    /// The database it queries.
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// A DataFusion session whose default schema is `database` (bare table
    /// names resolve there), with `information_schema` enabled and the
    /// time-series functions registered.
    pub fn context(&self, database: Option<&str>) -> SessionContext {
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG, database.unwrap_or("public"));
        let ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG, Arc::new(catalog::TelemarkCatalog::new(self.db.clone())));
        functions::register(&ctx);
        ctx
    }

    /// Plans `sql` in a session for `database`.
    pub async fn sql(&self, database: Option<&str>, sql: &str) -> Result<DataFrame, DataFusionError> {
        self.context(database).sql(sql).await
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
