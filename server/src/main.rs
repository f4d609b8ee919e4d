//! `telemark`: the Telemark server and command-line tool.
//!
//! - `telemark serve` runs the database with its HTTP API and Arrow Flight SQL endpoint;
//! - `telemark query "SQL"` queries a running server (Flight SQL) or a data directory directly;
//! - `telemark repair-wal` truncates a damaged WAL so a data directory opens again.

#![allow(unreachable_pub, reason = "a binary crate: `pub` marks each module's interface to the others")]

mod admin;
mod alerts;
mod auth;
mod backup;
mod config;
mod errors;
mod flight;
mod http;
mod last;
mod metrics;
mod plain;
mod server;
mod tls;
mod write;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// mimalloc instead of the system allocator: scans and ingest allocate and
/// free large column buffers per batch, which glibc's malloc hands back to
/// the kernel (page faults on every reuse).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "telemark", version, about = "Telemark: a time-series database for fleets of connected devices")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: HTTP API (queries, health, metrics) and Arrow Flight SQL.
    Serve {
        /// TOML configuration file (see `--print-config` for every option).
        #[arg(long, env = "TELEMARK_CONFIG")]
        config: Option<PathBuf>,
        /// Data directory [default: ./telemark-data].
        #[arg(long, env = "TELEMARK_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// HTTP API address [default: 127.0.0.1:8181].
        #[arg(long, env = "TELEMARK_HTTP_ADDR")]
        http_addr: Option<String>,
        /// Arrow Flight SQL address [default: 127.0.0.1:8182].
        #[arg(long, env = "TELEMARK_FLIGHT_ADDR")]
        flight_addr: Option<String>,
        /// MQTT listener address [default: 127.0.0.1:1883]; `off` disables MQTT.
        #[arg(long, env = "TELEMARK_MQTT_ADDR")]
        mqtt_addr: Option<String>,
        /// MQTT over TLS address [default: 127.0.0.1:8883]; needs [mqtt.tls] in the config.
        #[arg(long, env = "TELEMARK_MQTTS_ADDR")]
        mqtts_addr: Option<String>,
        /// Object storage for the cold tier: `s3://bucket/prefix` (credentials and
        /// endpoint from AWS_* variables) or `file:///dir`.
        #[arg(long, env = "TELEMARK_OBJECT_STORE")]
        object_store: Option<String>,
        /// Allow a non-loopback address without tokens (anyone reaching it can read and write).
        #[arg(long)]
        allow_unauthenticated: bool,
        /// Print the effective configuration as TOML and exit.
        #[arg(long)]
        print_config: bool,
    },
    /// Run a SQL query against a server (Flight SQL) or a data directory.
    Query {
        /// Server to ask, e.g. http://127.0.0.1:8182 (https:// for TLS) [default: that].
        #[arg(long, conflicts_with = "data_dir")]
        host: Option<String>,
        /// Query this data directory in-process instead of a server (the server must not be running on it).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Database for bare table names.
        #[arg(long)]
        db: Option<String>,
        /// API token.
        #[arg(long, env = "TELEMARK_TOKEN")]
        token: Option<String>,
        /// CA certificate (PEM) to trust for https:// hosts.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// The SQL.
        sql: String,
    },
    /// Back up a data directory that no server is running on (for a running server:
    /// POST /api/v3/admin/backup) to object storage: s3://bucket/prefix or file:///dir.
    Backup {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Where to: s3://bucket/prefix (credentials from AWS_* variables) or file:///dir.
        #[arg(long)]
        to: String,
        /// The server's configuration file (for its storage and object-store settings).
        #[arg(long, env = "TELEMARK_CONFIG")]
        config: Option<PathBuf>,
        /// The object store of the cold tier, if the data directory has one.
        #[arg(long, env = "TELEMARK_OBJECT_STORE")]
        object_store: Option<String>,
    },
    /// Restore the newest complete backup (or --backup NAME) into an empty data directory.
    Restore {
        /// Where the backups are: s3://bucket/prefix or file:///dir.
        #[arg(long)]
        from: String,
        /// An empty or new directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// A backup's name (as `telemark backup` printed it) instead of the newest.
        #[arg(long)]
        backup: Option<String>,
    },
    /// Truncate a damaged WAL at its first bad record so the data directory opens again
    /// (the writes after that point are lost; take a backup first).
    RepairWal {
        /// Data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // rustls warns on every TLS client that sends an IP address as SNI (mosquitto does): noise.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    use std::io::IsTerminal as _;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            http_addr,
            flight_addr,
            mqtt_addr,
            mqtts_addr,
            object_store,
            allow_unauthenticated,
            print_config,
        } => {
            let mut c = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(d) = data_dir {
                c.data_dir = d;
            }
            if let Some(a) = http_addr {
                c.http_addr = server::parse_addr(&a)?;
            }
            if let Some(a) = flight_addr {
                c.flight_addr = server::parse_addr(&a)?;
            }
            match mqtt_addr.as_deref() {
                Some("off") => c.mqtt.enabled = false,
                Some(a) => c.mqtt.addr = server::parse_addr(a)?,
                None => {}
            }
            if let Some(a) = mqtts_addr {
                c.mqtt.tls_addr = server::parse_addr(&a)?;
            }
            if let Some(url) = object_store {
                c.object_store.url = Some(url);
            }
            c.allow_unauthenticated |= allow_unauthenticated;
            if print_config {
                print!("{}", c.to_toml());
                return Ok(());
            }
            server::serve(c).await
        }
        Command::Query { host, data_dir, db, token, ca_cert, format, sql } => {
            let batches = match data_dir {
                Some(dir) => query_local(dir, db, &sql).await?,
                None => {
                    let host = host.unwrap_or_else(|| "http://127.0.0.1:8182".into());
                    let ca = match ca_cert {
                        Some(p) => Some(std::fs::read(&p).map_err(|e| format!("--ca-cert {}: {e}", p.display()))?),
                        None => None,
                    };
                    let mut client = telemark_client::Client::connect(
                        &host,
                        telemark_client::ConnectOptions { token, database: db, ca_pem: ca },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                    client.query(&sql).await.map_err(|e| e.to_string())?
                }
            };
            print_batches(&batches, format)
        }
        Command::Backup { data_dir, to, config, object_store } => {
            let mut c = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(url) = object_store {
                c.object_store.url = Some(url);
            }
            tokio::task::spawn_blocking(move || backup::backup(c, &data_dir, &to)).await.map_err(|e| e.to_string())?
        }
        Command::Restore { from, data_dir, backup: name } => {
            tokio::task::spawn_blocking(move || backup::restore(&from, &data_dir, name.as_deref()))
                .await
                .map_err(|e| e.to_string())?
        }
        Command::RepairWal { data_dir } => {
            match telemark_engine::Database::repair_wal(&data_dir).map_err(|e| e.to_string())? {
                Some(t) => println!(
                    "truncated {} at offset {} ({} bytes dropped)",
                    t.file.display(),
                    t.offset,
                    t.bytes_dropped
                ),
                None => println!("the WAL in {} is intact; nothing to repair", data_dir.display()),
            }
            Ok(())
        }
    }
}

async fn query_local(dir: PathBuf, db: Option<String>, sql: &str) -> Result<Vec<arrow::array::RecordBatch>, String> {
    let options = telemark_engine::Options { background_flush: false, ..telemark_engine::Options::default() };
    let database = tokio::task::spawn_blocking(move || telemark_engine::Database::open(&dir, options))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let engine = telemark_engine::query::QueryEngine::new(Arc::new(database));
    let df = engine.sql(db.as_deref(), sql).await.map_err(|e| errors::ApiError::from(e).message)?;
    df.collect().await.map_err(|e| errors::ApiError::from(e).message)
}

fn print_batches(batches: &[arrow::array::RecordBatch], format: OutputFormat) -> Result<(), String> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Table => {
            let t = arrow::util::pretty::pretty_format_batches(batches).map_err(|e| e.to_string())?;
            out.extend_from_slice(format!("{t}\n").as_bytes());
        }
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::ArrayWriter::new(&mut out);
            for b in batches {
                w.write(b).map_err(|e| e.to_string())?;
            }
            w.finish().map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
    }
    use std::io::Write as _;
    std::io::stdout().write_all(&out).map_err(|e| e.to_string())
}
