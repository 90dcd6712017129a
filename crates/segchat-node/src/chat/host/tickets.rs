//! The numbers broadcasts give authors' tickets, so a ticket crosses
//! each member's link once instead of with every message.
//!
//! Invariant: a link is sent a ticket's `ticket` event before the first
//! broadcast that names its number, and again whenever the number moved
//! to another ticket since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use segchat_proto::peer;
use segchat_proto::ticket::SignedTicket;
use segchat_proto::Frame;

use super::lock;
use crate::p2p::PeerFrame;

/// Per link: ticket number → the assignment it was last sent for.
pub(super) type LinkRefs = Arc<Mutex<HashMap<u16, u64>>>;

/// The numbers broadcasts give authors' tickets, node-wide, so a ticket
/// crosses each link once instead of with every message. A ticket keeps
/// its number while the table has room; when all [`peer::TICKET_REFS`] are
/// taken, numbers are reused round-robin under a new assignment, and a link
/// is sent the new ticket before a broadcast needs it.
#[derive(Debug, Default)]
pub(super) struct TicketRefs {
    by_ticket: HashMap<SignedTicket, u16>,
    /// By number: the ticket and its assignment (never 0, never reused).
    slots: Vec<(SignedTicket, u64)>,
    next_reuse: usize,
    assignments: u64,
}

impl TicketRefs {
    /// The number of `ticket` and its assignment, giving it one if needed.
    pub(super) fn number(&mut self, ticket: &SignedTicket) -> (u16, u64) {
        if let Some(&n) = self.by_ticket.get(ticket) {
            return (n, self.slots[n as usize].1);
        }
        self.assignments += 1;
        let n = if self.slots.len() < usize::from(peer::TICKET_REFS) {
            self.slots.push((ticket.clone(), self.assignments));
            self.slots.len() - 1
        } else {
            let n = self.next_reuse;
            self.next_reuse = (n + 1) % self.slots.len();
            let (old, _) =
                std::mem::replace(&mut self.slots[n], (ticket.clone(), self.assignments));
            self.by_ticket.remove(&old);
            n
        };
        // `slots` never grows past TICKET_REFS, a u16.
        let n = n as u16;
        self.by_ticket.insert(ticket.clone(), n);
        (n, self.assignments)
    }
}

/// A ticket some broadcasts of a batch name: (number, assignment, ticket).
pub(super) type UsedTicket = (u16, u64, SignedTicket);

/// `frames`, preceded by the `ticket` events this link has not had yet.
pub(super) fn with_tickets(refs: &LinkRefs, tickets: &[UsedTicket], frames: &Bytes) -> Bytes {
    let mut refs = lock(refs);
    let missing: Vec<&UsedTicket> = tickets
        .iter()
        .filter(|(n, assigned, _)| refs.get(n) != Some(assigned))
        .collect();
    if missing.is_empty() {
        return frames.clone();
    }
    let mut buf = BytesMut::new();
    for (n, assigned, ticket) in missing {
        let event: PeerFrame = Frame::Event(peer::Event::Ticket {
            ticket_ref: *n,
            ticket: ticket.clone(),
        });
        if let Err(e) = event.encode(&mut buf) {
            tracing::error!(error = %e, "could not encode a ticket");
            continue;
        }
        refs.insert(*n, *assigned);
    }
    buf.extend_from_slice(frames);
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use segchat_proto::ticket::Ticket;
    use segchat_proto::types::AccountKind;

    fn ticket(n: u32) -> SignedTicket {
        SignedTicket {
            ticket: Ticket {
                username: format!("user{n}"),
                kind: AccountKind::User,
                session_id: n.to_string(),
                node_key: String::new(),
                issued_at_ms: 0,
                expires_at_ms: 1,
            },
            signature: String::new(),
        }
    }

    /// The ticket events in front of a fan-out buffer, as (number, user).
    fn tickets_sent(bytes: &Bytes) -> Vec<(u16, String)> {
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = Vec::new();
        while let Ok(Some(frame)) = PeerFrame::decode(&mut buf, 1 << 20) {
            if let Frame::Event(peer::Event::Ticket { ticket_ref, ticket }) = frame {
                out.push((ticket_ref, ticket.ticket.username));
            }
        }
        out
    }

    #[test]
    fn a_ticket_keeps_its_number_until_the_table_is_full() {
        let mut refs = TicketRefs::default();
        let (a, assigned_a) = refs.number(&ticket(1));
        let (b, _) = refs.number(&ticket(2));
        assert_eq!((a, b), (0, 1));
        assert_eq!(refs.number(&ticket(1)), (a, assigned_a));
        for n in 3..=u32::from(peer::TICKET_REFS) {
            refs.number(&ticket(n));
        }
        // Full: the next new ticket reuses number 0 under a new assignment.
        let (reused, assigned) = refs.number(&ticket(99_999));
        assert_eq!(reused, 0);
        assert_ne!(assigned, assigned_a);
        // The ticket that had it gets a number again when it comes back.
        let (again, _) = refs.number(&ticket(1));
        assert_eq!(again, 1);
    }

    #[test]
    fn each_link_is_sent_a_ticket_once_and_again_after_its_number_moved() {
        let mut refs = TicketRefs::default();
        let link = LinkRefs::default();
        let frames = Bytes::from_static(b"");
        let t1 = ticket(1);
        let (n, a) = refs.number(&t1);
        let used = [(n, a, t1.clone())];
        assert_eq!(
            tickets_sent(&with_tickets(&link, &used, &frames)),
            vec![(0, "user1".into())]
        );
        assert!(tickets_sent(&with_tickets(&link, &used, &frames)).is_empty());
        // Another link starts with nothing.
        let other = LinkRefs::default();
        assert_eq!(tickets_sent(&with_tickets(&other, &used, &frames)).len(), 1);
        // Number 0 goes to another ticket: the first link hears of it.
        for n in 2..=u32::from(peer::TICKET_REFS) + 1 {
            refs.number(&ticket(n));
        }
        let t = ticket(u32::from(peer::TICKET_REFS) + 1);
        let (n, a) = refs.number(&t);
        assert_eq!(n, 0);
        assert_eq!(
            tickets_sent(&with_tickets(&link, &[(n, a, t)], &frames)),
            vec![(0, format!("user{}", peer::TICKET_REFS + 1))]
        );
    }
}
