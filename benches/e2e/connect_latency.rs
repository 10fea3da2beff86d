//! Connect latency as a client sees it, for the end-to-end harness
//! (`benches/e2e.sh`): the time `connect()` takes, SYN out to SYN-ACK back,
//! over many sequential connections through the gateway.
//!
//! ```sh
//! connect_latency serve 203.0.113.7:25           # accept and close, forever
//! connect_latency connect 203.0.113.7:25 5000    # prints one summary line
//! ```
//!
//! The summary is `connects=N failed=F p50_us=.. p90_us=.. p99_us=.. max_us=..`;
//! a connection that fails or takes longer than a second counts as failed
//! and is left out of the percentiles.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", addr] => serve(addr.parse().expect("ADDRESS:PORT")),
        ["connect", addr, n] => connect(
            addr.parse().expect("ADDRESS:PORT"),
            n.parse().expect("a number of connections"),
        ),
        _ => {
            eprintln!("usage: connect_latency serve ADDR:PORT | connect ADDR:PORT COUNT");
            std::process::exit(2);
        }
    }
}

fn serve(addr: SocketAddr) {
    let l = TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    for s in l.incoming() {
        // Accepted and dropped: the client measured connect() already.
        drop(s);
    }
}

fn connect(addr: SocketAddr, n: usize) {
    let mut us = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        let t = Instant::now();
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => {
                us.push(t.elapsed().as_secs_f64() * 1e6);
                drop(s);
            }
            Err(_) => failed += 1,
        }
    }
    us.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        us.get(((us.len() as f64 * p) as usize).min(us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "connects={} failed={failed} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1}",
        us.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        us.last().copied().unwrap_or(f64::NAN),
    );
}
