//! A Redis Cluster of three `redis-server --cluster-enabled yes` nodes owned by one test
//! (slots split in three, joined with CLUSTER MEET; no redis-cli needed), killed on drop.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisCluster {
    nodes: Vec<Child>,
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

/// A free port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = super::free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let binary = std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into());
        let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
        let nodes = ports
            .iter()
            .map(|port| {
                Command::new(&binary)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .arg("--cluster-config-file")
                    .arg(dir.path().join(format!("nodes-{port}.conf")))
                    .arg("--dir")
                    .arg(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server starts")
            })
            .collect();
        let cluster = RedisCluster {
            nodes,
            ports,
            _dir: dir,
        };
        let mut conns: Vec<redis::Connection> =
            cluster.ports.iter().map(|p| connected(*p)).collect();
        let ranges = [(0, 5460), (5461, 10922), (10923, 16383)];
        for (conn, (from, to)) in conns.iter_mut().zip(ranges) {
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(from)
                .arg(to)
                .query(conn)
                .unwrap();
        }
        for port in &cluster.ports[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(*port)
                .query(&mut conns[0])
                .unwrap();
        }
        for _ in 0..200 {
            let ok = conns.iter_mut().all(|conn| {
                let info: String = redis::cmd("CLUSTER").arg("INFO").query(conn).unwrap();
                info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3")
            });
            if ok {
                return cluster;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the Redis Cluster never became ready");
    }

    /// One node's URL: the bot finds the others.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|p| redis::cmd("DBSIZE").query(&mut connected(*p)).unwrap())
            .collect()
    }
}

fn connected(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    for _ in 0..200 {
        if let Ok(conn) = client.get_connection() {
            return conn;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("redis-server on {port} never answered");
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}
