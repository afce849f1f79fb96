//! Probe: produce→ack and produce→consume latency of the broker alone, one
//! record at a time (`CCWATCH_TEST_BROKER=host:port cargo run --release --example broker_rtt`).
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let b = std::env::var("CCWATCH_TEST_BROKER").unwrap();
    let topic = format!("rtt-{}", std::process::id());
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &b).create().unwrap();
    admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(&topic, 1, rdkafka::admin::TopicReplication::Fixed(1))],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("linger.ms", std::env::var("LINGER").unwrap_or("1".into()))
        .set("acks", std::env::var("ACKS").unwrap_or("all".into()))
        .create()
        .unwrap();
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", &topic)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    c.subscribe(&[&topic]).unwrap();
    for _ in 0..50 {
        c.poll(Duration::from_millis(100));
    }
    let mut acks = Vec::new();
    let mut e2e = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        p.send(FutureRecord::to(&topic).key("k").payload(&format!("{i}")), Duration::from_secs(5)).await.unwrap();
        acks.push(t.elapsed().as_secs_f64() * 1000.0);
        loop {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(1)) {
                if m.payload() == Some(format!("{i}").as_bytes()) {
                    e2e.push(t.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acks.sort_by(|a, b| a.partial_cmp(b).unwrap());
    e2e.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "ack ms p50 {:.1} p99 {:.1}; produce->consume ms p50 {:.1} p99 {:.1}",
        acks[25], acks[49], e2e[25], e2e[49]
    );
}
