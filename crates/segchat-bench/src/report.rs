//! Figures: latency percentiles, the readable table and the JSON line.

use std::collections::BTreeMap;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Percentiles {
    /// From durations in nanoseconds (sorted here).
    pub(crate) fn of(mut nanos: Vec<u64>) -> Percentiles {
        if nanos.is_empty() {
            return Percentiles::default();
        }
        nanos.sort_unstable();
        let at = |q: f64| -> f64 {
            // Nearest rank: the smallest value with at least q of all at or
            // below it.
            let rank = (q * nanos.len() as f64).ceil() as usize;
            let i = rank.clamp(1, nanos.len()) - 1;
            nanos.get(i).copied().unwrap_or_default() as f64 / 1e6
        };
        Percentiles {
            count: nanos.len() as u64,
            p50_ms: at(0.50),
            p90_ms: at(0.90),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: nanos.last().copied().unwrap_or_default() as f64 / 1e6,
        }
    }
}

/// CPU use over a window, in % of one core.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Cpu {
    pub(crate) host_pct: f64,
    pub(crate) server_pct: f64,
    pub(crate) bench_pct: f64,
    /// Of the machine's CPU time over the window, the share the hypervisor
    /// gave to other guests (`steal` in `/proc/stat`): on a shared VM, the
    /// run's figures are only comparable when this is low.
    pub(crate) steal_pct: f64,
}

/// Everything one `chat` run measured.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ChatReport {
    pub(crate) bench: &'static str,
    pub(crate) members: usize,
    pub(crate) members_connected: usize,
    pub(crate) senders: usize,
    pub(crate) rate: f64,
    pub(crate) duration_s: f64,
    pub(crate) body_bytes: usize,
    pub(crate) setup_s: f64,
    /// From the first post to the last one written.
    pub(crate) send_window_s: f64,
    /// From the last post written to the end of the drain.
    pub(crate) drain_s: f64,
    pub(crate) posts_sent: u64,
    pub(crate) send_rate: f64,
    pub(crate) posts_acked: u64,
    pub(crate) posts_refused: u64,
    pub(crate) posts_unanswered: u64,
    /// Refusal reasons and how often each came.
    pub(crate) refusals: BTreeMap<String, u64>,
    pub(crate) deliveries_expected: u64,
    pub(crate) deliveries: u64,
    pub(crate) delivered_pct: f64,
    /// Sequence numbers a member never saw though it saw a higher one
    /// (summed over members).
    pub(crate) seq_missing: u64,
    /// Broadcasts a member got twice.
    pub(crate) duplicates: u64,
    /// Broadcasts that reached a member after one with a higher sequence
    /// number.
    pub(crate) out_of_order: u64,
    /// Members whose peer link the host closed (or that broke) mid-run.
    pub(crate) members_cut_off: usize,
    pub(crate) cut_off_reasons: BTreeMap<String, u64>,
    /// `peer_connect`s the host refused with 503 during set-up, retried.
    pub(crate) peer_connect_503_retries: u64,
    /// Tracker links (members' and senders') lost during the run.
    pub(crate) tracker_links_lost: usize,
    pub(crate) latency: Percentiles,
    pub(crate) ack_latency: Percentiles,
    /// Over the send window.
    pub(crate) cpu: Cpu,
    pub(crate) host_rss_before_kib: u64,
    pub(crate) host_rss_after_kib: u64,
    pub(crate) host_hwm_kib: u64,
}

impl ChatReport {
    /// The table a person reads.
    pub(crate) fn print_table(&self) {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let lat = |p: &Percentiles| {
            format!(
                "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3} ms  (n = {})",
                p.p50_ms, p.p90_ms, p.p99_ms, p.p999_ms, p.max_ms, p.count
            )
        };
        let rows: Vec<(&str, String)> = vec![
            (
                "members",
                format!(
                    "{} connected of {} (visitors, peer link to the host)",
                    self.members_connected, self.members
                ),
            ),
            (
                "senders",
                format!(
                    "{} posting {} msg/s in total for {} s, {}-byte bodies",
                    self.senders, self.rate, self.duration_s, self.body_bytes
                ),
            ),
            (
                "set-up",
                format!(
                    "{:.1} s ({} peer_connect retries after 503)",
                    self.setup_s, self.peer_connect_503_retries
                ),
            ),
            (
                "posts",
                format!(
                    "{} sent in {:.2} s ({:.0}/s); {} acked, {} refused, {} unanswered",
                    self.posts_sent,
                    self.send_window_s,
                    self.send_rate,
                    self.posts_acked,
                    self.posts_refused,
                    self.posts_unanswered
                ),
            ),
            (
                "delivered",
                format!(
                    "{:.3} % ({} of {} = acked x members)",
                    self.delivered_pct, self.deliveries, self.deliveries_expected
                ),
            ),
            (
                "anomalies",
                format!(
                    "{} seqs missing, {} duplicates, {} out of order, {} members cut off, {} tracker links lost",
                    self.seq_missing,
                    self.duplicates,
                    self.out_of_order,
                    self.members_cut_off,
                    self.tracker_links_lost
                ),
            ),
            ("latency", lat(&self.latency)),
            ("ack latency", lat(&self.ack_latency)),
            (
                "CPU (send)",
                format!(
                    "host {:.1} %  server {:.1} %  bench {:.1} %  (of one core); stolen {:.1} % of the machine",
                    self.cpu.host_pct, self.cpu.server_pct, self.cpu.bench_pct, self.cpu.steal_pct
                ),
            ),
            (
                "host memory",
                format!(
                    "RSS {:.1} MiB before, {:.1} MiB after; peak (VmHWM) {:.1} MiB",
                    mib(self.host_rss_before_kib),
                    mib(self.host_rss_after_kib),
                    mib(self.host_hwm_kib)
                ),
            ),
            ("drain", format!("{:.2} s", self.drain_s)),
        ];
        println!();
        println!(
            "segchat-bench chat: {} members, {} msg/s",
            self.members, self.rate
        );
        for (k, v) in rows {
            println!("  {k:<12} {v}");
        }
        for (reason, n) in &self.refusals {
            println!("  {:<12} {n} x {reason}", "refused");
        }
        for (reason, n) in &self.cut_off_reasons {
            println!("  {:<12} {n} x {reason}", "cut off");
        }
    }

    /// One line of JSON for scripts.
    pub(crate) fn print_json(&self) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string(self)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(|ms| ms * 1_000_000).collect());
        assert_eq!(p.count, 100);
        assert_eq!(p.p50_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
