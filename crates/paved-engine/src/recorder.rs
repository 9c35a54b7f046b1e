//! Group commit of node outcomes.
//!
//! Every node's outcome is recorded before the node counts as done (a crash
//! after that finds it recorded; a crash before finds the resource and adopts
//! it). Recording each in its own transaction made the commit, not the
//! scheduling, the cost of a wide graph: with parallelism 10, ten nodes
//! finish at about the same time and each waited for its own commit.
//!
//! The recorder keeps that contract and shares the commit: the first outcome
//! to arrive starts a transaction holding every outcome queued by then; the
//! ones arriving while it commits form the next. Each caller still returns
//! only after the transaction holding its outcome committed, so nothing is
//! reported applied that is not durable.

use paved_store::{AppliedNode, Store};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

type Reply = oneshot::Sender<Result<(), String>>;

pub(crate) struct Recorder {
    queue: mpsc::UnboundedSender<(AppliedNode, Reply)>,
}

impl Recorder {
    /// A recorder for one environment's apply; its writer ends with it.
    pub(crate) fn start(store: Arc<dyn Store>, environment: String) -> Recorder {
        let (queue, mut incoming) = mpsc::unbounded_channel::<(AppliedNode, Reply)>();
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                while let Ok(more) = incoming.try_recv() {
                    batch.push(more);
                }
                let (nodes, replies): (Vec<AppliedNode>, Vec<Reply>) = batch.into_iter().unzip();
                let result = store.put_applied_nodes(&environment, &nodes).await.map_err(|e| e.to_string());
                for reply in replies {
                    let _ = reply.send(result.clone());
                }
            }
        });
        Recorder { queue }
    }

    /// Records one outcome; returns once it is committed.
    pub(crate) async fn record(&self, node: AppliedNode) -> Result<(), String> {
        let (reply, committed) = oneshot::channel();
        self.queue.send((node, reply)).map_err(|_| "the recorder stopped".to_string())?;
        committed.await.map_err(|_| "the recorder stopped".to_string())?
    }
}
