//! `last_values('table')`: the last-value cache as a table function, one row
//! per series with the newest value of every field (see
//! [`crate::Database::last_values`]). Tag `=` / `IN` filters are pushed into
//! the cache's tag index.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

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
        Ok(Arc::new(LastValuesTable { arrow: inner.schema(), inner, database, table }))
    }
}

/// The rows of `last_values(...)`.
#[derive(Debug)]
struct LastValuesTable {
    inner: TelemarkTable,
    database: String,
    table: String,
    arrow: SchemaRef,
}

impl LastValuesTable {
    fn tag_filters(&self, e: &Expr) -> Option<Vec<TagFilter>> {
        self.inner
            .classify(e)?
            .into_iter()
            .map(|p| match p {
                Pushed::Tag(tag, values) => Some(TagFilter { tag, values }),
                _ => None,
            })
            .collect()
    }
}

#[async_trait]
impl TableProvider for LastValuesTable {
    fn schema(&self) -> SchemaRef {
        self.arrow.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.tag_filters(f) {
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
        for f in filters.iter().filter_map(|f| self.tag_filters(f)).flatten() {
            // Two filters on one tag: keep the intersection.
            match tags.iter_mut().find(|t| t.tag == f.tag) {
                Some(t) => t.values.retain(|v| f.values.contains(v)),
                None => tags.push(f),
            }
        }
        let all: Vec<usize> = (0..self.arrow.fields().len()).collect();
        let wanted = projection.unwrap_or(&all);
        let mut names: Vec<String> =
            wanted.iter().filter_map(|&i| self.arrow.fields().get(i).map(|f| f.name().clone())).collect();
        // `COUNT(*)` projects nothing: read `time` for the row count.
        if names.is_empty() {
            names.push(TIME_COLUMN.to_string());
        }
        let batch = self.inner_db().last_values(&self.database, &self.table, &tags, Some(&names)).map_err(external)?;
        let keep: Vec<usize> = if wanted.is_empty() { Vec::new() } else { (0..names.len()).collect() };
        let exec = MemorySourceConfig::try_new_exec(&[vec![batch.clone()]], batch.schema(), Some(keep))?;
        Ok(exec)
    }
}

impl LastValuesTable {
    fn inner_db(&self) -> &Database {
        self.inner.db()
    }
}
