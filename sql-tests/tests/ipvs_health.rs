//! The IPVS director's replication check (`check_slave.sh` semantics) against real replicas:
//! a replica whose SQL thread stops is drained, and comes back with its weight once restarted
//! and caught up. The kernel side of the same desired state is exercised in ha's qemu test.

use mysql_async::prelude::*;
use rwproxy_ha::ipvs::check::{Check, RealServer, VirtualServer};
use rwproxy_ha::ipvs::director::{Checker, DirectorConfig};
use rwproxy_ha::ipvs::{Forward, Service, ServiceKey};
use rwproxy_sql_tests::Cluster;
use std::time::{Duration, Instant};

fn weights(d: &rwproxy_ha::ipvs::DesiredService) -> Vec<(String, u32)> {
    d.dests
        .iter()
        .map(|d| (d.socket_addr().to_string(), d.weight))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_thread_stopped_drains_and_catching_up_restores() {
    let cluster = Cluster::start(2).await.unwrap();
    let replicas = cluster.replica_addrs();
    let primary = cluster.primary_addr();
    let cfg = DirectorConfig {
        virtual_servers: vec![VirtualServer {
            service: Service::new(ServiceKey::tcp("192.0.2.200".parse().unwrap(), 3306), "wrr"),
            forward: Forward::Route,
            real_servers: replicas
                .iter()
                .zip([3, 1])
                .map(|(a, weight)| RealServer {
                    addr: a.parse().unwrap(),
                    weight,
                })
                .collect(),
            check: Check::Replication {
                user: "root".into(),
                password: String::new(),
                max_lag: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
            },
            delay_loop: Duration::from_secs(1),
            inhibit_on_failure: true,
            quorum: 4,
            sorry_server: Some(primary.parse().unwrap()),
        }],
        vrrp_instance: None,
    };
    let mut checker = Checker::new();
    let (desired, states) = checker.round(&cfg).await;
    assert!(states.iter().all(|s| s.health.up), "{states:?}");
    assert_eq!(
        weights(&desired[0]),
        vec![(replicas[0].clone(), 3), (replicas[1].clone(), 1)]
    );

    // The classic failure: the SQL thread stops (here by hand, as after a replication error).
    let r0 = cluster.servers().nth(1).unwrap();
    let mut c = r0.root_conn().await.unwrap();
    c.query_drop("STOP SLAVE SQL_THREAD").await.unwrap();
    let (desired, states) = checker.round(&cfg).await;
    assert!(!states[0].health.up);
    assert!(
        states[0].health.reason.contains("SQL thread stopped"),
        "{:?}",
        states[0].health
    );
    // Drained (inhibit_on_failure), and weight 1 left is under quorum 4: the primary joins.
    assert_eq!(
        weights(&desired[0]),
        vec![
            (replicas[0].clone(), 0),
            (replicas[1].clone(), 1),
            (primary.clone(), 1)
        ]
    );

    // Writes the stopped replica misses, then the restart: back once caught up.
    let mut p = cluster.servers().next().unwrap().root_conn().await.unwrap();
    p.query_drop("CREATE DATABASE IF NOT EXISTS ipvs_health")
        .await
        .unwrap();
    p.query_drop("CREATE TABLE ipvs_health.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    p.query_drop("INSERT INTO ipvs_health.t VALUES (1), (2), (3)")
        .await
        .unwrap();
    c.query_drop("START SLAVE SQL_THREAD").await.unwrap();
    cluster.wait_replicas_caught_up().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (desired, states) = checker.round(&cfg).await;
        if states.iter().all(|s| s.health.up) {
            assert_eq!(
                weights(&desired[0]),
                vec![(replicas[0].clone(), 3), (replicas[1].clone(), 1)]
            );
            break;
        }
        assert!(Instant::now() < deadline, "never came back: {states:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM ipvs_health.t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);

    // A server that is not a replica (the primary) is not a read server.
    let mut only_primary = cfg.clone();
    only_primary.virtual_servers[0].real_servers = vec![RealServer {
        addr: primary.parse().unwrap(),
        weight: 1,
    }];
    let (_, states) = checker.round(&only_primary).await;
    assert!(
        !states[0].health.up && states[0].health.reason.contains("not a replica"),
        "{states:?}"
    );
}

/// The primary dies: every replica's IO thread then retries it, and a replica that was serving
/// stays in the read VIP's pool (it holds all the primary sent, and nothing answering is more
/// current), as the proxy's own monitor keeps it. One that was out already (its IO thread
/// stopped before, so behind) stays out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_serving_when_the_primary_dies_stay_in() {
    let cluster = Cluster::start(2).await.unwrap();
    let replicas = cluster.replica_addrs();
    let cfg = DirectorConfig {
        virtual_servers: vec![VirtualServer {
            service: Service::new(ServiceKey::tcp("192.0.2.201".parse().unwrap(), 3306), "wrr"),
            forward: Forward::Route,
            real_servers: replicas
                .iter()
                .map(|a| RealServer {
                    addr: a.parse().unwrap(),
                    weight: 1,
                })
                .collect(),
            check: Check::Replication {
                user: "root".into(),
                password: String::new(),
                max_lag: Duration::from_secs(60),
                timeout: Duration::from_secs(2),
            },
            delay_loop: Duration::from_secs(1),
            inhibit_on_failure: false,
            quorum: 1,
            sorry_server: None,
        }],
        vrrp_instance: None,
    };
    let mut checker = Checker::new();
    let (_, states) = checker.round(&cfg).await;
    assert!(states.iter().all(|s| s.health.up), "{states:?}");
    let behind = cluster.servers().nth(2).unwrap();
    let mut c = behind.root_conn().await.unwrap();
    c.query_drop("STOP SLAVE IO_THREAD").await.unwrap();
    let (_, states) = checker.round(&cfg).await;
    assert!(states[0].health.up && !states[1].health.up, "{states:?}");

    cluster.primary.kill();
    let serving = cluster.servers().nth(1).unwrap();
    let mut c = serving.root_conn().await.unwrap();
    for _ in 0..100 {
        let row: mysql_async::Row = c.query_first("SHOW SLAVE STATUS").await.unwrap().unwrap();
        if row.get::<String, _>("Slave_IO_Running").unwrap() == "Connecting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let (desired, states) = checker.round(&cfg).await;
        assert!(states[0].health.up, "{states:?}");
        assert!(!states[1].health.up, "{states:?}");
        assert_eq!(weights(&desired[0]), vec![(replicas[0].clone(), 1)]);
    }
}
