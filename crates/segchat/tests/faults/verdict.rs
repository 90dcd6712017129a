//! The check every scenario ends with: after the fault heals, within a
//! deadline, every node holds every accepted message exactly once, all in
//! the same order, with no gap marker (see the suite's module doc for the
//! forms checked).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::api::Snapshot;
use crate::load::Ledger;
use crate::procs::Node;

/// How long the nodes have to agree once the fault is healed and posting
/// has stopped. Generous: the machine may be loaded; the time it took is
/// printed.
pub(crate) const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// What converged: how long it took and how many messages every node holds.
#[derive(Debug)]
pub(crate) struct Converged {
    pub(crate) after: Duration,
    pub(crate) messages: usize,
}

/// Waits until every node's history of `channel` satisfies every check, or
/// panics at the deadline with everything that is still wrong.
pub(crate) async fn converge(nodes: &[&Node], channel: &str, ledger: &Ledger) -> Converged {
    let start = Instant::now();
    loop {
        let mut snaps = Vec::new();
        let mut problems = Vec::new();
        for n in nodes {
            match n.api().snapshot(channel).await {
                Ok(s) => snaps.push(s),
                Err(e) => {
                    problems.push(format!("{}: history unreadable: {e:#}", n.name));
                    snaps.push(Snapshot::default());
                }
            }
        }
        if problems.is_empty() {
            problems = judge(nodes, &snaps, ledger);
        }
        if problems.is_empty() {
            let c = Converged {
                after: start.elapsed(),
                messages: snaps[0].messages.len(),
            };
            let (acc, refused, none) = ledger.counts();
            eprintln!(
                "converged {:.1} s after the last post: {} messages on each of {} nodes \
                 ({acc} accepted, {refused} refused, {none} unanswered posts)",
                c.after.as_secs_f64(),
                c.messages,
                nodes.len()
            );
            return c;
        }
        if start.elapsed() > CONVERGE_WITHIN {
            let mut text = format!(
                "the nodes did not converge within {CONVERGE_WITHIN:?} of the fault healing:\n  {}",
                problems.join("\n  ")
            );
            for n in nodes {
                text.push_str(&format!(
                    "\n--- {} system log (tail):\n{}",
                    n.name,
                    n.log_tail(30)
                ));
            }
            panic!("{text}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Everything wrong with these histories; empty when all checks pass.
fn judge(nodes: &[&Node], snaps: &[Snapshot], ledger: &Ledger) -> Vec<String> {
    let attempts = ledger.attempts();
    let accepted = ledger.accepted();
    let attempted: BTreeSet<(&str, &str)> = attempts
        .iter()
        .map(|a| (a.author.as_str(), a.body.as_str()))
        .collect();
    let mut problems = Vec::new();
    for (node, snap) in nodes.iter().zip(snaps) {
        let who = &node.name;
        let mut ids = BTreeSet::new();
        let mut bodies = BTreeSet::new();
        for m in &snap.messages {
            if !ids.insert(m.id.as_str()) {
                problems.push(format!("{who}: holds {} ({:?}) twice", m.id, m.body));
            }
            if !bodies.insert((m.author.as_str(), m.body.as_str())) {
                problems.push(format!(
                    "{who}: holds {:?} by {} twice, under two ids",
                    m.body, m.author
                ));
            }
            if !attempted.contains(&(m.author.as_str(), m.body.as_str())) {
                problems.push(format!(
                    "{who}: holds {:?} by {} that nobody posted",
                    m.body, m.author
                ));
            }
            if let Some(a) = accepted.get(&m.id) {
                if a.body != m.body || a.author != m.author {
                    problems.push(format!(
                        "{who}: {} is {:?} by {}, but was accepted as {:?} by {}",
                        m.id, m.body, m.author, a.body, a.author
                    ));
                }
            }
        }
        let missing: Vec<String> = accepted
            .iter()
            .filter(|(id, _)| !ids.contains(id.as_str()))
            .map(|(id, a)| {
                format!(
                    "{:?} ({id}, accepted at {:.1} s)",
                    a.body,
                    a.at.as_secs_f64()
                )
            })
            .collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{who}: lacks {} of {} accepted messages: {}",
                missing.len(),
                accepted.len(),
                preview(&missing)
            ));
        }
        if !snap.gaps.is_empty() {
            problems.push(format!(
                "{who}: shows gap markers over host seq {:?}",
                snap.gaps
            ));
        }
        problems.extend(author_order(who, snap));
        problems.extend(sender_states(node, snap, &accepted));
    }
    problems.extend(same_order(nodes, snaps));
    problems
}

/// Each author's messages appear in the order the author wrote them (the
/// counter in the body goes up).
fn author_order(who: &str, snap: &Snapshot) -> Vec<String> {
    let mut last: HashMap<&str, u64> = HashMap::new();
    let mut out = Vec::new();
    for m in &snap.messages {
        let Some(n) = m
            .body
            .rsplit_once(' ')
            .and_then(|(_, n)| n.parse::<u64>().ok())
        else {
            continue;
        };
        if let Some(prev) = last.insert(m.author.as_str(), n) {
            if prev >= n {
                out.push(format!(
                    "{who}: {}'s {:?} comes after their {prev}",
                    m.author, m.body
                ));
            }
        }
    }
    out
}

/// At its sender, an accepted message has left the outbox and the server's
/// backup holds it (`backed_up`): not `pending`, never `refused`.
fn sender_states(
    node: &Node,
    snap: &Snapshot,
    accepted: &BTreeMap<String, crate::load::Attempt>,
) -> Vec<String> {
    let stuck: Vec<String> = snap
        .messages
        .iter()
        .filter(|m| m.author == node.name && accepted.contains_key(&m.id))
        .filter(|m| m.state.as_deref() != Some("backed_up"))
        .map(|m| format!("{:?} is {}", m.body, m.state.as_deref().unwrap_or("?")))
        .collect();
    if stuck.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "{}: {} of its accepted messages are not backed up yet: {}",
        node.name,
        stuck.len(),
        preview(&stuck)
    )]
}

/// Every node lists the same messages in the same order.
fn same_order(nodes: &[&Node], snaps: &[Snapshot]) -> Vec<String> {
    let mut out = Vec::new();
    let first: Vec<&str> = snaps[0].messages.iter().map(|m| m.id.as_str()).collect();
    for (node, snap) in nodes.iter().zip(snaps).skip(1) {
        let ids: Vec<&str> = snap.messages.iter().map(|m| m.id.as_str()).collect();
        if ids != first {
            let at = ids
                .iter()
                .zip(&first)
                .position(|(a, b)| a != b)
                .unwrap_or(ids.len().min(first.len()));
            let body = |s: &Snapshot| {
                s.messages
                    .get(at)
                    .map(|m| m.body.clone())
                    .unwrap_or_else(|| "(end)".into())
            };
            out.push(format!(
                "{} and {} differ from position {at} of {}/{}: {:?} vs {:?}",
                nodes[0].name,
                node.name,
                first.len(),
                ids.len(),
                body(&snaps[0]),
                body(snap)
            ));
        }
    }
    out
}

fn preview(items: &[String]) -> String {
    let mut s = items.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > 8 {
        s.push_str(&format!(", … ({} more)", items.len() - 8));
    }
    s
}
