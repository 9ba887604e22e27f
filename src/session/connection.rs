//! One Redis connection as every part of the bot keeps it — the session store and the
//! replicas' board alike: to a single server (redis-rs's `ConnectionManager`,
//! reconnecting in the background) or to a Redis Cluster, found by asking the server
//! named in `redis.url` (`INFO cluster`) so the operator sets nothing else. Every key a
//! script touches at once shares a hash tag, so each runs on one node.

use std::time::Duration;

use anyhow::Context;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

/// How long a connection and an answer may take: fail fast, fall back, try again.
const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Connects, failing fast (2 s to connect, 2 s per answer) when Redis is unreachable;
/// a command is tried `retries` more times. The client of the named server comes back
/// too, for pub/sub (a Cluster delivers every publication to every node).
pub async fn connect(url: &str, retries: usize) -> anyhow::Result<(redis::Client, Conn)> {
    let client = redis::Client::open(url).context("invalid redis.url")?;
    let unreachable = || {
        format!(
            "cannot connect to Redis at {}",
            crate::config::redact_url_str(url)
        )
    };
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(retries);
    let mut single = ConnectionManager::new_with_config(client.clone(), config)
        .await
        .with_context(unreachable)?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut single)
        .await
        .with_context(unreachable)?;
    if !info.contains("cluster_enabled:1") {
        return Ok((client, Conn::Single(single)));
    }
    let cluster = redis::cluster::ClusterClient::builder([url])
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(retries as u32)
        .build()
        .context("invalid redis.url for a Redis Cluster")?
        .get_async_connection()
        .await
        .with_context(unreachable)?;
    tracing::info!("redis.url names a Redis Cluster node: keys are spread over the cluster");
    Ok((client, Conn::Cluster(cluster)))
}
