//! The Arrow Flight SQL service: what Grafana's FlightSQL datasource, ADBC
//! and JDBC drivers talk to.
//!
//! Statement queries, prepared statements with parameters, catalog metadata
//! (catalogs, schemas, tables with their schemas, table types, SQL info),
//! bulk ingest (`CommandStatementIngest`), bearer-token auth and the basic-auth
//! handshake. Results stream batch by batch.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use crate::plain::{plain_batch, plain_schema};
use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandPreparedStatementQuery, CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SqlSupportedTransaction, TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use datafusion::common::ScalarValue;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Principal;
use crate::errors::{ApiError, Kind};
use crate::server::AppState;

/// Headers that name the database, in the order they are consulted.
const DATABASE_HEADERS: [&str; 4] = ["database", "bucket", "bucket-name", "iox-namespace-name"];

/// Open prepared statements one token may hold (clients that never close them cannot grow memory without bound).
const MAX_PREPARED_PER_TOKEN: usize = 4096;

/// The only table type Telemark has.
const TABLE_TYPE: &str = "BASE TABLE";

static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Telemark");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    // No transactions: a client that saw them supported would send BeginTransaction.
    b.append(SqlInfo::FlightSqlServerTransaction, SqlSupportedTransaction::None as i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    #[expect(clippy::expect_used, reason = "built from constants; a failure is a bug seen at the first request")]
    b.build().expect("static SQL info")
});

/// A prepared statement: its SQL, database, owner and bound parameters.
#[derive(Debug, Clone)]
struct Prepared {
    sql: String,
    database: Option<String>,
    owner: String,
    params: Vec<ScalarValue>,
    /// The plan made when it was prepared, for the first execution (ADBC and
    /// JDBC prepare every statement, then execute it at once): taken once, and
    /// only within `PLAN_CACHE_AGE` and without parameters.
    planned: Option<(Instant, datafusion::dataframe::DataFrame)>,
}

/// The Flight SQL service.
#[derive(Debug)]
pub struct TelemarkFlightSql {
    state: Arc<AppState>,
    prepared: Mutex<HashMap<Vec<u8>, Prepared>>,
    planned: Mutex<PlanCache>,
}

/// Physical plans made by `GetFlightInfo`, kept for the `DoGet` that
/// usually follows, so a query is planned once rather than twice. Keyed by
/// token, ticket and parameters; taken by the first `DoGet`; bounded in
/// count and age (a client that never fetches costs nothing lasting).
#[derive(Default)]
struct PlanCache {
    entries: Vec<(PlanKey, Instant, Planned)>,
}

/// A planned query, ready to execute.
type Planned = (Arc<dyn ExecutionPlan>, Arc<TaskContext>);

type PlanKey = (String, Vec<u8>, String);

const PLAN_CACHE_ENTRIES: usize = 64;
const PLAN_CACHE_AGE: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for PlanCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlanCache").field("entries", &self.entries.len()).finish()
    }
}

impl PlanCache {
    fn put(&mut self, key: PlanKey, plan: Arc<dyn ExecutionPlan>, task: Arc<TaskContext>) {
        let now = Instant::now();
        self.entries.retain(|(k, at, _)| *k != key && now.duration_since(*at) < PLAN_CACHE_AGE);
        if self.entries.len() >= PLAN_CACHE_ENTRIES {
            self.entries.remove(0);
        }
        self.entries.push((key, now, (plan, task)));
    }

    fn take(&mut self, key: &PlanKey) -> Option<Planned> {
        let i = self.entries.iter().position(|(k, _, _)| k == key)?;
        let (_, at, planned) = self.entries.remove(i);
        (at.elapsed() < PLAN_CACHE_AGE).then_some(planned)
    }
}

type DoGetStream = Pin<Box<dyn Stream<Item = Result<FlightData, Status>> + Send + 'static>>;

fn plan_key(p: &Principal, ticket: &[u8], params: &[ScalarValue]) -> PlanKey {
    (p.name.clone(), ticket.to_vec(), if params.is_empty() { String::new() } else { format!("{params:?}") })
}

fn status(e: ApiError) -> Status {
    Status::from(e)
}

/// The database named by the request headers, if any.
fn header_database(metadata: &MetadataMap) -> Option<String> {
    DATABASE_HEADERS.iter().find_map(|h| metadata.get(*h).and_then(|v| v.to_str().ok()).map(str::to_string))
}

/// Rewrites `?` placeholders (outside quotes) to DataFusion's `$1`, `$2`, ….
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let (mut n, mut quote) = (0, None::<char>);
    for c in sql.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (None, '?') => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

fn info(schema: &Schema, ticket: Vec<u8>, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

fn one_batch<E: std::fmt::Display>(
    schema: SchemaRef,
    batch: Result<RecordBatch, E>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| Status::internal(e.to_string()))?;
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { Ok(batch) }))
        .map_err(Status::from);
    Ok(Response::new(Box::pin(stream)))
}

impl TelemarkFlightSql {
    /// A service over the server's state.
    pub fn new(state: Arc<AppState>) -> Self {
        TelemarkFlightSql { state, prepared: Mutex::new(HashMap::new()), planned: Mutex::new(PlanCache::default()) }
    }

    fn principal(&self, metadata: &MetadataMap) -> Result<Principal, Status> {
        self.state.metrics.request("flight");
        let header = metadata.get("authorization").and_then(|v| v.to_str().ok());
        self.state.auth.check(header).map_err(|e| {
            let e = ApiError::from(e);
            self.state.metrics.error("flight", e.kind);
            status(e)
        })
    }

    fn fail(&self, e: ApiError) -> Status {
        self.state.metrics.error("flight", e.kind);
        status(e)
    }

    /// Plans `sql` for the principal and returns the physical plan's schema (what DoGet will send).
    /// Plans a query for `GetFlightInfo`: its schema, with the plan kept for the `DoGet` under `ticket`.
    async fn plan_schema(
        &self,
        p: &Principal,
        db: Option<&str>,
        sql: &str,
        params: &[ScalarValue],
        ticket: &[u8],
    ) -> Result<SchemaRef, Status> {
        let df = self.dataframe(p, db, sql, params).await?;
        self.keep_plan(p, df, params, ticket).await
    }

    /// Makes the physical plan of `df` and keeps it for the `DoGet` of `ticket`; returns its schema.
    async fn keep_plan(
        &self,
        p: &Principal,
        df: datafusion::dataframe::DataFrame,
        params: &[ScalarValue],
        ticket: &[u8],
    ) -> Result<SchemaRef, Status> {
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.map_err(|e| self.fail(e.into()))?;
        let schema = plain_schema(&plan.schema());
        self.plans().put(plan_key(p, ticket, params), plan, task);
        Ok(schema)
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, PlanCache> {
        self.planned.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn dataframe(
        &self,
        p: &Principal,
        db: Option<&str>,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<datafusion::dataframe::DataFrame, Status> {
        if let Some(db) = db {
            p.require_read(db).map_err(|e| self.fail(e.into()))?;
        }
        let ctx = self.state.engine.context_with_access(db, p.access.clone());
        let mut df = telemark_engine::query::QueryEngine::plan(&ctx, sql).await.map_err(|e| self.fail(e.into()))?;
        if !params.is_empty() {
            df = df.with_param_values(params.to_vec()).map_err(|e| self.fail(e.into()))?;
        }
        Ok(df)
    }

    /// Runs a query for `DoGet`: the plan `GetFlightInfo` made for `ticket`, or a new one.
    async fn execute(
        &self,
        p: &Principal,
        db: Option<&str>,
        sql: &str,
        params: &[ScalarValue],
        ticket: &[u8],
    ) -> Result<Response<DoGetStream>, Status> {
        let started = Instant::now();
        let cached = self.plans().take(&plan_key(p, ticket, params));
        let (plan, task_ctx) = match cached {
            Some(planned) => planned,
            None => {
                let df = self.dataframe(p, db, sql, params).await?;
                let task_ctx = Arc::new(df.task_ctx());
                (df.create_physical_plan().await.map_err(|e| self.fail(e.into()))?, task_ctx)
            }
        };
        let schema = plain_schema(&plan.schema());
        let stream = datafusion::physical_plan::execute_stream(plan, task_ctx).map_err(|e| self.fail(e.into()))?;
        let metrics = self.state.metrics.clone();
        let out_schema = schema.clone();
        let batches = stream
            .map(move |b| {
                Some(
                    b.map_err(|e| FlightError::ExternalError(Box::new(e)))
                        .and_then(|b| plain_batch(b, &out_schema).map_err(FlightError::Arrow)),
                )
            })
            .chain(futures::stream::once(async move {
                metrics.query(started.elapsed());
                None
            }))
            .filter_map(futures::future::ready);
        let flight = FlightDataEncoderBuilder::new().with_schema(schema).build(batches).map_err(Status::from);
        Ok(Response::new(Box::pin(flight)))
    }

    fn prepared(&self, handle: &[u8], p: &Principal) -> Result<Prepared, Status> {
        let map = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(handle) {
            Some(s) if s.owner == p.name => Ok(s.clone()),
            _ => Err(self
                .fail(ApiError::new(Kind::NotFound, "unknown prepared statement handle (closed, or never created)"))),
        }
    }
}

/// A statement ticket: the SQL and the database it runs in.
#[derive(serde::Serialize, serde::Deserialize)]
struct StatementHandle {
    db: Option<String>,
    sql: String,
}

#[tonic::async_trait]
impl FlightSqlService for TelemarkFlightSql {
    type FlightService = TelemarkFlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        let p = self.principal(request.metadata())?;
        let token = p.token.clone().unwrap_or_default();
        let reply = HandshakeResponse { protocol_version: 0, payload: token.clone().into() };
        let stream = futures::stream::iter(vec![Ok(reply)]);
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(stream));
        if !token.is_empty()
            && let Ok(v) = format!("Bearer {token}").parse()
        {
            response.metadata_mut().insert("authorization", v);
        }
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(request.metadata())?;
        let db = header_database(request.metadata());
        let sql = number_placeholders(&query.query);
        let handle = serde_json::to_vec(&StatementHandle { db: db.clone(), sql: sql.clone() })
            .map_err(|e| Status::internal(e.to_string()))?;
        let schema = self.plan_schema(&p, db.as_deref(), &sql, &[], &handle).await?;
        let ticket = TicketStatementQuery { statement_handle: handle.into() };
        info(&schema, ticket.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let p = self.principal(request.metadata())?;
        let h: StatementHandle = serde_json::from_slice(&ticket.statement_handle)
            .map_err(|e| Status::invalid_argument(format!("malformed statement ticket: {e}")))?;
        self.execute(&p, h.db.as_deref(), &h.sql, &[], &ticket.statement_handle).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let p = self.principal(request.metadata())?;
        let db = header_database(request.metadata());
        let sql = number_placeholders(&query.query);
        // Plan now, so bad SQL fails at prepare time with the parser's message.
        let df = self.dataframe(&p, db.as_deref(), &sql, &[]).await?;
        let dataset_schema = plain_schema(df.schema().as_arrow());
        let handle: Vec<u8> = rand::random::<u64>().to_le_bytes().to_vec();
        let planned = Some((Instant::now(), df));
        let stmt = Prepared { sql, database: db, owner: p.name.clone(), params: Vec::new(), planned };
        {
            let mut map = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let owned = map.values().filter(|s| s.owner == p.name).count();
            if owned >= MAX_PREPARED_PER_TOKEN {
                return Err(self.fail(ApiError::new(
                    Kind::TooLarge,
                    format!("token `{}` has {owned} open prepared statements; close some first", p.name),
                )));
            }
            map.insert(handle.clone(), stmt);
        }
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let IpcMessage(schema_bytes) = SchemaAsIpc::new(&dataset_schema, &options)
            .try_into()
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))?;
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into(),
            dataset_schema: schema_bytes,
            parameter_schema: Default::default(),
        })
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let p = self.principal(request.metadata())?;
        let handle = query.prepared_statement_handle.to_vec();
        self.prepared(&handle, &p)?;
        let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(|e| FlightError::Tonic(Box::new(e))),
        );
        let mut params = Vec::new();
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| Status::invalid_argument(format!("reading parameters: {e}")))?;
            if batch.num_rows() == 0 {
                continue;
            }
            params = (0..batch.num_columns())
                .map(|c| ScalarValue::try_from_array(batch.column(c), 0))
                .collect::<Result<_, _>>()
                .map_err(|e| Status::invalid_argument(format!("parameter values: {e}")))?;
        }
        if let Some(s) = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&handle) {
            s.params = params;
        }
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(handle.into()) })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(request.metadata())?;
        let handle = &cmd.prepared_statement_handle;
        let s = self.prepared(handle, &p)?;
        let fresh = s.planned.filter(|(at, _)| s.params.is_empty() && at.elapsed() < PLAN_CACHE_AGE);
        let schema = match fresh {
            Some((_, df)) => {
                if let Some(s) =
                    self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_mut(&handle[..])
                {
                    s.planned = None;
                }
                self.keep_plan(&p, df, &[], handle).await?
            }
            None => self.plan_schema(&p, s.database.as_deref(), &s.sql, &s.params, handle).await?,
        };
        info(&schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let p = self.principal(request.metadata())?;
        let s = self.prepared(&cmd.prepared_statement_handle, &p)?;
        self.execute(&p, s.database.as_deref(), &s.sql, &s.params, &cmd.prepared_statement_handle).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let p = self.principal(request.metadata())?;
        let mut map = self.prepared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(query.prepared_statement_handle.as_ref()).is_some_and(|s| s.owner == p.name) {
            map.remove(query.prepared_statement_handle.as_ref());
        }
        Ok(())
    }

    /// `ExecuteUpdate` (ADBC `execute_update`, JDBC `executeUpdate`): runs a
    /// `DELETE` or `INSERT` and answers the rows it matched or wrote.
    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let p = self.principal(request.metadata())?;
        let db = header_database(request.metadata());
        let started = Instant::now();
        let df = self.dataframe(&p, db.as_deref(), &cmd.query, &[]).await?;
        let batches = df.collect().await.map_err(|e| self.fail(e.into()))?;
        self.state.metrics.query(started.elapsed());
        // DML answers one `count` row; anything else counts its rows.
        let mut affected = 0u64;
        for b in &batches {
            match b.column_by_name("count").and_then(|c| c.as_any().downcast_ref::<arrow::array::UInt64Array>()) {
                Some(counts) if b.num_columns() == 1 => affected += counts.iter().flatten().sum::<u64>(),
                _ => affected += b.num_rows() as u64,
            }
        }
        Ok(i64::try_from(affected).unwrap_or(i64::MAX))
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
        let p = self.principal(request.metadata())?;
        let db =
            cmd.schema.clone().filter(|s| !s.is_empty()).or_else(|| header_database(request.metadata())).ok_or_else(
                || {
                    self.fail(ApiError::new(
                        Kind::BadRequest,
                        "ingest needs a database: set the target schema or the `database` header",
                    ))
                },
            )?;
        p.require_write(&db).map_err(|e| self.fail(e.into()))?;
        let existing = self.state.db.table_schema(&db, &cmd.table);
        if let Some(opts) = &cmd.table_definition_options {
            let exists = existing.is_some();
            if exists && opts.if_exists == TableExistsOption::Fail as i32 {
                return Err(self.fail(ApiError::new(
                    Kind::BadRequest,
                    format!("table {db}.{} already exists (mode `create`)", cmd.table),
                )));
            }
            if exists && opts.if_exists == TableExistsOption::Replace as i32 {
                return Err(self.fail(ApiError::new(
                    Kind::Unsupported,
                    "ingest mode `replace` is not supported: use `append` or `create_append`",
                )));
            }
            if !exists && opts.if_not_exist == TableNotExistOption::Fail as i32 {
                return Err(self.fail(ApiError::new(
                    Kind::NotFound,
                    format!("table {db}.{} does not exist (mode `append`)", cmd.table),
                )));
            }
        }
        let mut batches = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            request.into_inner().map_err(|e| FlightError::Tonic(Box::new(e))),
        );
        let mut rows = 0i64;
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| Status::invalid_argument(format!("reading ingest data: {e}")))?;
            let schema = self.state.db.table_schema(&db, &cmd.table);
            let write = telemark_engine::query::record_batch_to_write(&cmd.table, &batch, schema.as_ref())
                .map_err(|e| self.fail(e.into()))?;
            let engine = self.state.db.clone();
            let database = db.clone();
            let outcome = tokio::task::spawn_blocking(move || engine.write(&database, &write))
                .await
                .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?
                .map_err(|e| self.fail(e.into()))?;
            rows += outcome.rows_written as i64;
            if let Some(first) = outcome.rejected.first() {
                return Err(self.fail(ApiError::new(
                    Kind::BadRequest,
                    format!("{} rows rejected ({rows} rows written so far); first: {first}", outcome.rejected.len()),
                )));
            }
        }
        Ok(rows)
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder(&SQL_INFO).schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(request.metadata())?;
        let builder = query.into_builder(&SQL_INFO);
        let schema = builder.schema();
        one_batch(schema, builder.build())
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(request.metadata())?;
        let mut builder = query.into_builder();
        builder.append(telemark_engine::query::CATALOG);
        let schema = builder.schema();
        one_batch(schema, builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let p = self.principal(request.metadata())?;
        let mut builder = query.into_builder();
        for db in self.state.db.databases().iter().filter(|d| p.access.can_read(d)) {
            builder.append(telemark_engine::query::CATALOG, db);
        }
        let schema = builder.schema();
        one_batch(schema, builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        let schema = query.clone().into_builder().schema();
        info(&schema, query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        let p = self.principal(request.metadata())?;
        let mut builder = query.into_builder();
        for db in self.state.db.databases().iter().filter(|d| p.access.can_read(d)) {
            for table in self.state.db.tables(db) {
                let Some(ts) = self.state.db.table_schema(db, &table) else { continue };
                let schema = plain_schema(&telemark_engine::arrow_schema(&ts));
                builder
                    .append(telemark_engine::query::CATALOG, db, &table, TABLE_TYPE, &schema)
                    .map_err(|e| Status::internal(e.to_string()))?;
            }
        }
        let schema = builder.schema();
        one_batch(schema, builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(request.metadata())?;
        info(&table_types_schema(), query.as_any().encode_to_vec(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        _query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<DoGetStream>, Status> {
        self.principal(request.metadata())?;
        let schema = Arc::new(table_types_schema());
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec![TABLE_TYPE])) as ArrayRef]);
        one_batch(schema, batch)
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        // ADBC sends CloseSession on close and ignores the answer; answer it politely.
        if request.get_ref().r#type == "CloseSession" {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        Err(Status::unimplemented(format!("action `{}` is not supported", request.get_ref().r#type)))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}

/// Decodes the `Any` in a ticket, for tests.
#[cfg(test)]
fn decode_any(bytes: &[u8]) -> Option<arrow_flight::sql::Any> {
    arrow_flight::sql::Any::decode(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_quotes() {
        assert_eq!(
            number_placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c = ?"),
            "SELECT * FROM t WHERE a = $1 AND b = '?' AND c = $2"
        );
    }

    #[test]
    fn tickets_decode() {
        let t = TicketStatementQuery { statement_handle: b"x".to_vec().into() };
        assert!(decode_any(&t.as_any().encode_to_vec()).is_some());
    }

    #[test]
    fn plans_are_taken_once_by_their_own_key_and_bounded() {
        let plan: Arc<dyn ExecutionPlan> =
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(Arc::new(arrow::datatypes::Schema::empty())));
        let task = Arc::new(TaskContext::default());
        let key = |owner: &str, ticket: &[u8]| (owner.to_string(), ticket.to_vec(), String::new());
        let mut cache = PlanCache::default();
        cache.put(key("a", b"t1"), plan.clone(), task.clone());
        assert!(cache.take(&key("b", b"t1")).is_none(), "another token's plan");
        assert!(cache.take(&key("a", b"t1")).is_some());
        assert!(cache.take(&key("a", b"t1")).is_none(), "taken once");
        for i in 0..(PLAN_CACHE_ENTRIES + 10) {
            cache.put(key("a", &i.to_le_bytes()), plan.clone(), task.clone());
        }
        assert_eq!(cache.entries.len(), PLAN_CACHE_ENTRIES);
        assert!(cache.take(&key("a", &0usize.to_le_bytes())).is_none(), "oldest evicted");
        assert!(cache.take(&key("a", &(PLAN_CACHE_ENTRIES + 9).to_le_bytes())).is_some());
    }
}
