//! A durable write queue shared by many connections.
//!
//! Connections submit the rows of a message and await the result; one
//! writer thread takes everything queued, writes it with a single WAL
//! append and fsync ([`Database::write_many`]), and answers each
//! submitter. Many small messages thus share one fsync, and an
//! acknowledgement sent after `write` returns is an acknowledgement of
//! durable data.

use std::sync::Arc;
use std::sync::mpsc;

use telemark_engine::{Database, WriteBatch, WriteOutcome};
use tokio::sync::oneshot;

/// Rows for one database.
pub type DatabaseBatch = (String, WriteBatch);

struct Job {
    writes: Vec<DatabaseBatch>,
    done: oneshot::Sender<Vec<telemark_engine::Result<WriteOutcome>>>,
}

/// The writer thread stopped (the database was closed or its thread died).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the ingest writer has stopped")]
pub struct SinkClosed;

/// Most jobs written in one group.
const MAX_GROUP: usize = 4096;

/// Handle to the writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("writes", &self.writes.len()).finish()
    }
}

impl Sink {
    /// Starts the writer thread. It ends when every `Sink` clone is dropped.
    pub fn start(db: Arc<Database>) -> std::io::Result<Sink> {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("telemark-ingest-writer".into()).spawn(move || run(&db, &rx))?;
        Ok(Sink { tx })
    }

    /// Writes the batches; returns one result per batch once they are durable.
    pub async fn write(
        &self,
        writes: Vec<DatabaseBatch>,
    ) -> Result<Vec<telemark_engine::Result<WriteOutcome>>, SinkClosed> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let (done, wait) = oneshot::channel();
        self.tx.send(Job { writes, done }).map_err(|_| SinkClosed)?;
        wait.await.map_err(|_| SinkClosed)
    }
}

fn run(db: &Database, rx: &mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let pairs = jobs.iter().flat_map(|j| j.writes.iter().map(|(d, b)| (d.as_str(), b)));
        let mut results = db.write_many(pairs).into_iter();
        for job in jobs {
            let mine: Vec<_> = results.by_ref().take(job.writes.len()).collect();
            // The submitter may have gone (connection closed); its rows are written anyway.
            let _ = job.done.send(mine);
        }
    }
}
