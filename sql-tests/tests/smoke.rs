use mysql_async::prelude::*;
use rwproxy_sql_tests::{proxy, Cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let cluster = Cluster::start(2).await.unwrap();
    let p = proxy::start(&proxy::config_toml(&cluster, &[1, 1], ""))
        .await
        .unwrap();
    let mut c = p.conn().await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    println!("read on {id}");
    c.query_drop("CREATE TABLE IF NOT EXISTS t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    c.query_drop("INSERT INTO t (v) VALUES ('a')")
        .await
        .unwrap();
    let lid: u64 = c
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap()
        .unwrap();
    println!("last id {lid}");
    c.query_drop("BEGIN").await.unwrap();
    let id: u32 = c.query_first("SELECT @@server_id").await.unwrap().unwrap();
    assert_eq!(id, 1);
    c.query_drop("COMMIT").await.unwrap();
    // The prepared read runs on a replica: it must have the table.
    cluster.wait_replicas_caught_up().await.unwrap();
    let v: Vec<(u32, String)> = c
        .exec("SELECT id, v FROM t WHERE id > ?", (0,))
        .await
        .unwrap();
    println!("{v:?}");
}
