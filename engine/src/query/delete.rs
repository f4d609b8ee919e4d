//! SQL `DELETE FROM table WHERE …`: the conditions become an engine
//! [`DeleteRequest`], run when the plan executes (so planning a statement,
//! as Flight SQL's `GetFlightInfo` does, deletes nothing). The plan yields
//! one row, `count`: the rows that matched.

use std::fmt;
use std::sync::Arc;

use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties, SendableRecordBatchStream,
};

use super::external;
use crate::{Database, DeleteRequest};

/// Runs one engine delete and reports the matched rows as `count`.
#[derive(Debug)]
pub(crate) struct DeleteExec {
    /// `None`: the conditions cannot match (an empty range): report 0.
    db: Option<Arc<Database>>,
    database: String,
    request: DeleteRequest,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DeleteExec {
    /// A delete whose conditions match nothing.
    pub(crate) fn nothing() -> Self {
        let mut d = Self::new_inner(None, String::new(), DeleteRequest::new(""));
        d.db = None;
        d
    }

    pub(crate) fn new(db: Arc<Database>, database: String, request: DeleteRequest) -> Self {
        Self::new_inner(Some(db), database, request)
    }

    fn new_inner(db: Option<Arc<Database>>, database: String, request: DeleteRequest) -> Self {
        let schema = Arc::new(Schema::new(vec![Field::new("count", DataType::UInt64, false)]));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        DeleteExec { db, database, request, schema, properties }
    }
}

impl DisplayAs for DeleteExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        write!(f, "TelemarkDeleteExec: table={}.{}", self.database, r.table)?;
        if r.start.is_some() || r.end.is_some() {
            let show = |v: Option<i64>| v.map_or("unbounded".to_string(), |t| t.to_string());
            write!(f, ", time=[{}, {})", show(r.start), show(r.end))?;
        }
        for tf in &r.tag_filters {
            write!(f, ", {} IN ({})", tf.tag, tf.values.join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for DeleteExec {
    fn name(&self) -> &'static str {
        "TelemarkDeleteExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    leaf_plan_methods!();

    fn execute(&self, _partition: usize, _context: Arc<TaskContext>) -> Result<SendableRecordBatchStream> {
        let (db, database, request, schema) =
            (self.db.clone(), self.database.clone(), self.request.clone(), self.schema.clone());
        let out_schema = schema.clone();
        let run = async move {
            let matched = match db {
                None => 0,
                // A scan to count, a WAL append and an fsync: blocking work.
                Some(db) => {
                    tokio::task::spawn_blocking(move || db.delete(&database, &request))
                        .await
                        .map_err(|e| DataFusionError::Execution(format!("delete task failed: {e}")))?
                        .map_err(external)?
                        .rows_matched
                }
            };
            RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![matched]))])
                .map_err(DataFusionError::from)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(out_schema, futures::stream::once(run))))
    }
}
