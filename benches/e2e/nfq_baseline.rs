//! The `nfq` crate as portgate would use it, for the end-to-end harness
//! (`benches/e2e.sh`): one queue, one `recv` and one verdict per packet,
//! the same copy range and queue length as portgate, and the same decision
//! (portgate's compiled table). What it lacks, batching and a socket to
//! poll or size, is what the comparison measures.
//!
//! ```sh
//! nfq_baseline RULES QUEUE      # serves QUEUE until killed
//! ```

use portgate::decision;
use portgate::queue::COPY_RANGE;
use portgate::rules;
use portgate::table::Table;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [rules_file, queue] = &args[..] else {
        eprintln!("usage: nfq_baseline RULES QUEUE");
        std::process::exit(2);
    };
    let queue: u16 = queue.parse().expect("a queue number");
    let loaded = rules::load_file(rules_file.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let table = Table::compile(&loaded.ruleset);
    drop(loaded);

    let mut q = nfq::Queue::open().expect("open a netfilter queue socket");
    q.bind(queue).expect("bind the queue");
    q.set_copy_range(queue, COPY_RANGE as u16)
        .expect("set the copy range");
    q.set_queue_max_len(queue, 4096)
        .expect("set the queue length");
    q.set_fail_open(queue, false).expect("set fail-open");
    eprintln!("nfq_baseline: serving netfilter queue {queue}");
    loop {
        let mut msg = match q.recv() {
            Ok(m) => m,
            // ENOBUFS and friends: keep going, as portgate does.
            Err(_) => continue,
        };
        let v = decision::decide_queued(&table, msg.get_payload(), msg.get_hw_protocol());
        msg.set_verdict(if v.decision.is_accept() {
            nfq::Verdict::Accept
        } else {
            nfq::Verdict::Drop
        });
        let _ = q.verdict(msg);
    }
}
