//! # telemark-client
//!
//! A small Rust client for Telemark over Arrow Flight SQL, with token auth
//! and TLS. It speaks nothing Telemark-specific: any Flight SQL server works.
//!
//! ```no_run
//! # async fn demo() -> Result<(), telemark_client::ClientError> {
//! use telemark_client::{Client, ConnectOptions};
//! let options = ConnectOptions { token: Some("secret".into()), database: Some("fleet".into()), ca_pem: None };
//! let mut client = Client::connect("http://127.0.0.1:8182", options).await?;
//! let batches = client.query("SELECT count(*) FROM readings").await?;
//! # Ok(()) }
//! ```

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// Largest message accepted or sent, each way.
const MAX_MESSAGE: usize = 64 << 20;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The address or TLS settings are unusable.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The server URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
}

fn server_error(e: arrow_flight::error::FlightError) -> ClientError {
    // Show the server's status message, not the transport wrapper around it.
    match e {
        arrow_flight::error::FlightError::Tonic(status) => {
            ClientError::Server(format!("{:?}: {}", status.code(), status.message()))
        }
        other => ClientError::Server(other.to_string()),
    }
}

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// API token, sent as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Database for bare table names (the `database` header).
    pub database: Option<String>,
    /// CA certificate (PEM) to trust for `https://` URLs; the system roots are not used.
    pub ca_pem: Option<Vec<u8>>,
}

/// A connection to a Flight SQL server.
#[derive(Debug)]
pub struct Client {
    inner: FlightSqlServiceClient<tonic::transport::Channel>,
}

impl Client {
    /// Connects to `url` (`http://host:port`, or `https://host:port` for TLS).
    pub async fn connect(url: &str, options: ConnectOptions) -> Result<Self, ClientError> {
        let err = |message: String| ClientError::Connect { url: url.to_string(), message };
        let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| err(e.to_string()))?;
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            if let Some(ca) = &options.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(ca));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| err(e.to_string()))?;
        }
        let channel = endpoint.connect().await.map_err(|e| err(format!("{e}: is the server running?")))?;
        let flight = FlightServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let mut inner = FlightSqlServiceClient::new_from_inner(flight);
        if let Some(t) = options.token {
            inner.set_token(t);
        }
        if let Some(db) = options.database {
            inner.set_header("database", db);
        }
        Ok(Client { inner })
    }

    /// Runs a query and collects every batch of every endpoint.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, ClientError> {
        let info = self.inner.execute(sql.to_string(), None).await.map_err(server_error)?;
        let mut out = Vec::new();
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else { continue };
            let stream = self.inner.do_get(ticket).await.map_err(server_error)?;
            let batches: Vec<RecordBatch> = stream.try_collect().await.map_err(server_error)?;
            out.extend(batches);
        }
        Ok(out)
    }
}
