//! The counting semantics against a real redis-server (started here on a free
//! loopback port), and one call through the gRPC server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use aigw_shared::ratelimit_proto::{
    grpc_frame, grpc_unframe, refund_value, Code, Descriptor, LimitOverride, Request, Response, Unit, OP_KEY,
    OP_RESERVE, PATH, REFUND_KEY,
};
use ratelimit_redis::counting::Limiter;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

struct Redis {
    child: Child,
    address: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_redis() -> Redis {
    let port = free_port();
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let address = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if std::net::TcpStream::connect(&address).is_ok() {
            return Redis { child, address };
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start");
}

const NOW: u64 = 1_800_000_000; // 30 000 000 minutes: the start of a minute window

fn rule(subject: &str, limit: u32) -> Descriptor {
    Descriptor {
        entries: vec![("aigw_rule".into(), "team".into()), ("subject".into(), subject.into())],
        limit: Some(LimitOverride { requests_per_unit: limit, unit: Unit::Minute }),
    }
}

fn reserve(subject: &str, limit: u32, hits: u32) -> Request {
    let marker = Descriptor { entries: vec![(OP_KEY.into(), OP_RESERVE.into())], limit: None };
    Request { domain: "aigw".into(), descriptors: vec![rule(subject, limit), marker], hits_addend: hits }
}

fn charge(subject: &str, limit: u32, hits: u32) -> Request {
    Request { domain: "aigw".into(), descriptors: vec![rule(subject, limit)], hits_addend: hits }
}

fn refund(subject: &str, window: u64, hits: u32) -> Request {
    let mut descriptor = rule(subject, 0);
    descriptor.limit = None;
    descriptor.entries.push((REFUND_KEY.into(), refund_value(Unit::Minute, window)));
    Request { domain: "aigw".into(), descriptors: vec![descriptor], hits_addend: hits }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn reserve_refuses_without_counting_charge_always_counts_refund_floors_at_zero() {
    let redis = start_redis();
    let limiter = Limiter::new(&redis.address);
    runtime().block_on(async {
        let call = |request: Request| {
            let limiter = &limiter;
            async move { limiter.should_rate_limit_at(&request, NOW + 5).await.unwrap() }
        };
        let first = call(reserve("alice", 500, 300)).await;
        assert_eq!(first.overall_code, Code::Ok);
        assert_eq!(first.statuses[0].limit_remaining, 200);
        assert_eq!(first.statuses[0].duration_until_reset_seconds, Some(55));
        assert_eq!(first.statuses[1].code, Code::Ok, "the marker is never limited");
        // 300 more do not fit: refused, and nothing is counted.
        let refused = call(reserve("alice", 500, 300)).await;
        assert_eq!((refused.overall_code, refused.statuses[0].limit_remaining), (Code::OverLimit, 200));
        assert_eq!(call(reserve("alice", 500, 200)).await.statuses[0].limit_remaining, 0);
        // A charge is counted even past the limit, and says so.
        let charged = call(charge("alice", 500, 50)).await;
        assert_eq!((charged.overall_code, charged.statuses[0].limit_remaining), (Code::OverLimit, 0));
        // Returns: 550 - 120 = 430 used; 70 fit again, 71 do not.
        call(refund("alice", NOW / 60, 120)).await;
        assert_eq!(call(reserve("alice", 500, 71)).await.overall_code, Code::OverLimit);
        assert_eq!(call(reserve("alice", 500, 70)).await.overall_code, Code::Ok);
        // A return larger than the count floors at zero.
        call(refund("alice", NOW / 60, 100_000)).await;
        assert_eq!(call(reserve("alice", 500, 500)).await.statuses[0].limit_remaining, 0);
        // Another subject has its own counter.
        assert_eq!(call(reserve("bob", 500, 500)).await.overall_code, Code::Ok);
        // A return for a window that has no counter creates nothing.
        call(refund("carol", NOW / 60 - 1, 10)).await;
        assert_eq!(call(reserve("carol", 10, 10)).await.overall_code, Code::Ok);
    });
}

#[test]
fn windows_are_fixed_per_unit_and_returns_go_to_their_window() {
    let redis = start_redis();
    let limiter = Limiter::new(&redis.address);
    runtime().block_on(async {
        let at = |request: Request, now: u64| {
            let limiter = &limiter;
            async move { limiter.should_rate_limit_at(&request, now).await.unwrap() }
        };
        assert_eq!(at(reserve("a", 100, 100), NOW).await.overall_code, Code::Ok);
        assert_eq!(at(reserve("a", 100, 1), NOW + 59).await.overall_code, Code::OverLimit);
        // The next minute: a fresh budget; a return to the old window leaves it alone.
        assert_eq!(at(reserve("a", 100, 60), NOW + 60).await.overall_code, Code::Ok);
        at(refund("a", NOW / 60, 100), NOW + 61).await;
        assert_eq!(at(reserve("a", 100, 41), NOW + 62).await.overall_code, Code::OverLimit);
        assert_eq!(at(reserve("a", 100, 40), NOW + 62).await.overall_code, Code::Ok);
    });
}

#[test]
fn a_reservation_over_several_descriptors_is_all_or_nothing() {
    let redis = start_redis();
    let limiter = Limiter::new(&redis.address);
    runtime().block_on(async {
        let mut both = reserve("wide", 1000, 80);
        both.descriptors.insert(1, rule("narrow", 100));
        assert_eq!(limiter.should_rate_limit_at(&both, NOW).await.unwrap().overall_code, Code::Ok);
        let refused = limiter.should_rate_limit_at(&both, NOW).await.unwrap();
        assert_eq!(refused.overall_code, Code::OverLimit);
        assert_eq!((refused.statuses[0].code, refused.statuses[1].code), (Code::Ok, Code::OverLimit));
        // `wide` was not charged for the refused call.
        let wide = limiter.should_rate_limit_at(&reserve("wide", 1000, 1), NOW).await.unwrap();
        assert_eq!(wide.statuses[0].limit_remaining, 1000 - 81);
    });
}

#[test]
fn redis_down_is_an_error_not_a_verdict() {
    let limiter = Limiter::new(format!("127.0.0.1:{}", free_port()));
    runtime().block_on(async {
        assert!(limiter.should_rate_limit_at(&reserve("a", 10, 1), NOW).await.is_err());
    });
}

#[test]
fn grpc_round_trip_and_unavailable_without_redis() {
    let redis = start_redis();
    runtime().block_on(async {
        let call = |limiter: Limiter, request: Request| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let server = tokio::spawn(ratelimit_redis::server::serve(listener, Arc::new(limiter)));
            let socket = tokio::net::TcpStream::connect(address).await.unwrap();
            let (client, connection) = h2::client::handshake(socket).await.unwrap();
            tokio::spawn(connection);
            let mut client = client.ready().await.unwrap();
            let head = http::Request::builder()
                .method("POST")
                .uri(format!("http://{address}{PATH}"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .unwrap();
            let (response, mut send) = client.send_request(head, false).unwrap();
            send.send_data(bytes::Bytes::from(grpc_frame(&request.encode())), true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.headers()["content-type"], "application/grpc");
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                bytes.extend_from_slice(&chunk.unwrap());
            }
            let trailers = body.trailers().await.unwrap().unwrap();
            server.abort();
            let status = trailers["grpc-status"].to_str().unwrap().to_string();
            (status, grpc_unframe(&bytes).map(|(message, _)| Response::decode(message).unwrap()))
        };
        let (status, response) = call(Limiter::new(&redis.address), reserve("z", 10, 4)).await;
        assert_eq!(status, "0");
        let response = response.unwrap();
        assert_eq!((response.overall_code, response.statuses[0].limit_remaining), (Code::Ok, 6));
        let (status, response) = call(Limiter::new(format!("127.0.0.1:{}", free_port())), reserve("z", 10, 4)).await;
        assert_eq!((status.as_str(), response), ("14", None));
    });
}
