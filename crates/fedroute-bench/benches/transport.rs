//! Criterion benches of fedroute's transport (issue 6): workload 1
//! (sequential ping, both poll modes), 3 (model transfer: 16 MiB echo and
//! 100 MiB echo, both modes) and 6 (wire limits: plain tonic unary RPCs,
//! bidirectional ping-pongs, 16 MiB down and up, no fedroute logic).
//!
//! Everything runs in one actix `System` (current-thread runtime), both
//! ends in this process, as `fedroute bench` does. Measurement times are
//! short so that `cargo bench --bench transport` stays around two minutes;
//! `fedroute bench` gives the full table with medians and ratios.

use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use fedroute::node::PollMode;
use fedroute_bench::rig::{BenchNodeHandle, BenchResearcher, TrainReplySize, CONNECT_TIMEOUT};
use fedroute_bench::wire_limit::WireRig;

const MIB: usize = 1 << 20;

fn short<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    g
}

fn wire_limits(c: &mut Criterion) {
    let system = actix::System::new();
    let rig = system
        .block_on(WireRig::start(16 * MIB))
        .expect("wire-limit rig");
    let mut g = short(c, "6_wire_limit");
    g.throughput(Throughput::Elements(1));
    g.bench_function("unary_rpc", |b| {
        b.iter_custom(|iters| system.block_on(rig.unary(iters)).expect("unary"))
    });
    g.bench_function("bidi_ping_pong", |b| {
        b.iter_custom(|iters| system.block_on(rig.ping_pong(iters)).expect("ping-pong"))
    });
    g.throughput(Throughput::Bytes((16 * MIB) as u64));
    g.bench_function("down_16MiB", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| system.block_on(rig.down(16 * MIB)).expect("down"))
                .sum()
        })
    });
    g.bench_function("up_16MiB", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| system.block_on(rig.up(16 * MIB)).expect("up"))
                .sum()
        })
    });
    g.finish();
}

fn fedroute_rig(
    system: &actix::SystemRunner,
    mode: PollMode,
    blob: &Bytes,
) -> (BenchResearcher, BenchNodeHandle) {
    system
        .block_on(async {
            let mut researcher = BenchResearcher::start().await?;
            let node_id = format!("NODE_criterion_{mode}");
            let node =
                BenchNodeHandle::start(node_id.clone(), researcher.endpoint(), mode, blob.clone())
                    .await?;
            researcher
                .wait_connected(std::slice::from_ref(&node_id), CONNECT_TIMEOUT)
                .await?;
            Ok::<_, fedroute_bench::BenchError>((researcher, node))
        })
        .expect("researcher and node")
}

fn sequential_ping(c: &mut Criterion) {
    let system = actix::System::new();
    let mut g = short(c, "1_sequential_ping");
    g.throughput(Throughput::Elements(1));
    for mode in [PollMode::Unary, PollMode::Streaming] {
        let (researcher, node) = fedroute_rig(&system, mode, &Bytes::new());
        g.bench_function(mode.to_string(), |b| {
            b.iter_custom(|iters| {
                system
                    .block_on(async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += researcher.ping(&node.node_id).await?;
                        }
                        Ok::<_, fedroute_bench::BenchError>(total)
                    })
                    .expect("ping")
            })
        });
        system.block_on(node.shutdown());
        let _ = system.block_on(researcher.handle.shutdown());
    }
    g.finish();
}

fn transfer(c: &mut Criterion) {
    let system = actix::System::new();
    let blob = Bytes::from(vec![0xa5u8; 100 * MIB]);
    let mut g = short(c, "3_transfer_echo");
    for mode in [PollMode::Unary, PollMode::Streaming] {
        let (researcher, node) = fedroute_rig(&system, mode, &blob);
        for mib in [16usize, 100] {
            // Both directions counted.
            g.throughput(Throughput::Bytes((2 * mib * MIB) as u64));
            g.bench_function(format!("{mode}_{mib}MiB"), |b| {
                b.iter_custom(|iters| {
                    system
                        .block_on(async {
                            let mut total = Duration::ZERO;
                            for _ in 0..iters {
                                total += researcher
                                    .train(&node.node_id, &blob, mib * MIB, TrainReplySize::Echo)
                                    .await?;
                            }
                            Ok::<_, fedroute_bench::BenchError>(total)
                        })
                        .expect("echo")
                })
            });
        }
        system.block_on(node.shutdown());
        let _ = system.block_on(researcher.handle.shutdown());
    }
    g.finish();
}

criterion_group!(benches, wire_limits, sequential_ping, transfer);
criterion_main!(benches);
