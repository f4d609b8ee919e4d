//! Databases as DataFusion schemas, tables as table providers.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result;

use super::Access;
use super::table::TelemarkTable;
use crate::Database;

/// The `telemark` catalog: one schema per database.
#[derive(Debug)]
pub(crate) struct TelemarkCatalog {
    db: Arc<Database>,
    access: Arc<Access>,
}

impl TelemarkCatalog {
    pub(crate) fn new(db: Arc<Database>, access: Arc<Access>) -> Self {
        TelemarkCatalog { db, access }
    }
}

impl CatalogProvider for TelemarkCatalog {
    fn schema_names(&self) -> Vec<String> {
        self.db.databases().into_iter().filter(|d| self.access.can_read(d)).collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if !self.access.can_read(name) || !self.db.databases().iter().any(|d| d == name) {
            return None;
        }
        let writable = self.access.can_write(name);
        Some(Arc::new(DatabaseSchema { db: self.db.clone(), name: name.to_string(), writable }))
    }
}

/// One database's tables.
#[derive(Debug)]
pub(crate) struct DatabaseSchema {
    db: Arc<Database>,
    name: String,
    writable: bool,
}

#[async_trait]
impl SchemaProvider for DatabaseSchema {
    fn table_names(&self) -> Vec<String> {
        self.db.tables(&self.name)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self.db.table_schema(&self.name, name).map(|schema| {
            Arc::new(TelemarkTable::new(self.db.clone(), &self.name, name, schema, self.writable))
                as Arc<dyn TableProvider>
        }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.db.table_schema(&self.name, name).is_some()
    }
}
