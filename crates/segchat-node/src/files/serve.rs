//! The seeding side: `file_open` and `file_have` on the peer layer, and
//! the gate in front of the blobs protocol.
//!
//! Invariant: the blobs protocol serves a peer only a file that a
//! `file_open` on one of its live peer links granted — its ticket and
//! proof checked, its user allowed to read a channel where a message
//! here shares that file, or a member of a conversation where a direct
//! message here shares it. A connection from a key with no grant is
//! refused at once; pushes, multi-blob requests and anything but a plain
//! file are refused always.

use futures::future::BoxFuture;
use futures::FutureExt;
use iroh_blobs::Hash;
use segchat_proto::peer;
use segchat_proto::ticket::ProofPurpose;
use segchat_proto::types::{AccountKind, NodeAddr};
use segchat_proto::Failure;

use super::{to_hash, Files, DM_SCOPE};
use crate::p2p::{Answer, PeerLink, PeerProtocol, ProtocolLink};

/// Most files one link may be granted.
const MAX_GRANTS_PER_LINK: usize = 256;
/// Most blobs-protocol connections served at once.
const MAX_BLOB_CONNS: usize = 256;
/// File requests (`file_open`, `file_have`) one link may make a second,
/// and in a burst: each checks a signature and may ask the server who
/// may read a channel.
const REQUESTS_PER_SECOND: u32 = 20;
const REQUEST_BURST: u32 = 64;

/// The blobs protocol's events, answered by the node's gate (see
/// `segchat_net::blobs`): nothing is served while the node is invisible.
pub(super) fn police(files: Files) -> iroh_blobs::provider::events::EventSender {
    let link = files.inner.link.clone();
    segchat_net::blobs::police(files.inner.gate.clone(), MAX_BLOB_CONNS, move || {
        !link.state().is_invisible()
    })
}

impl PeerProtocol for Files {
    fn serves(&self, request: &peer::Request) -> bool {
        matches!(
            request,
            peer::Request::FileOpen { .. } | peer::Request::FileHave { .. }
        )
    }

    fn open(&self, _link: &PeerLink) -> Box<dyn ProtocolLink> {
        Box::new(FileLink {
            files: self.clone(),
            granted: Vec::new(),
            pace: governor::RateLimiter::direct(
                governor::Quota::per_second(nonzero(REQUESTS_PER_SECOND))
                    .allow_burst(nonzero(REQUEST_BURST)),
            ),
        })
    }
}

/// Files' side of one peer link: what it was granted, and in which
/// channel.
struct FileLink {
    files: Files,
    granted: Vec<(Hash, String)>,
    /// [`REQUESTS_PER_SECOND`] for this link.
    pace: governor::DefaultDirectRateLimiter,
}

fn nonzero(n: u32) -> std::num::NonZeroU32 {
    std::num::NonZeroU32::new(n).unwrap_or(std::num::NonZeroU32::MIN)
}

impl ProtocolLink for FileLink {
    fn request<'a>(
        &'a mut self,
        link: &'a PeerLink,
        _id: u32,
        request: peer::Request,
    ) -> BoxFuture<'a, Result<Answer, Failure>> {
        async move {
            if self.pace.check().is_err() {
                return Err(Failure::new(
                    segchat_proto::Status::RateLimited,
                    format!("at most {REQUESTS_PER_SECOND} file requests a second"),
                ));
            }
            match request {
                peer::Request::FileOpen {
                    ticket,
                    proof,
                    channel,
                    hash,
                } => self.open_file(link, ticket, proof, channel, hash).await,
                peer::Request::FileHave { hash } => {
                    let h = to_hash(&hash)?;
                    let Some((_, channel)) = self.granted.iter().find(|(g, _)| *g == h) else {
                        return Err(Failure::bad_request("file_open this file first"));
                    };
                    // Named to later askers at the address this link
                    // comes from (not one it claims).
                    self.files.add_holder(
                        h,
                        NodeAddr {
                            node_id: link.remote_key.clone(),
                            addr: link.addr,
                        },
                    );
                    // A channel this node hosts keeps a copy of what is
                    // shared in it.
                    if channel != DM_SCOPE {
                        self.files.keep_copy(channel, &hash).await;
                    }
                    Ok(Answer::Reply(peer::Reply::Done))
                }
                _ => Err(Failure::bad_request("not a file request")),
            }
        }
        .boxed()
    }

    fn closed(&mut self, link: &PeerLink) {
        let who = link.remote_id;
        for (h, _) in self.granted.drain(..) {
            self.files.inner.gate.revoke(who, h);
        }
    }
}

impl FileLink {
    async fn open_file(
        &mut self,
        link: &PeerLink,
        ticket: segchat_proto::ticket::SignedTicket,
        proof: String,
        channel: Option<String>,
        hash: String,
    ) -> Result<Answer, Failure> {
        let files = &self.files;
        if files.inner.link.state().is_invisible() {
            link.cancel.cancel();
            return Err(Failure::unavailable("this node is offline"));
        }
        let h = to_hash(&hash)?;
        files.inner.chat.check_presented(
            link,
            &ticket,
            ProofPurpose::File { hash: &hash },
            &proof,
            "seeder",
        )?;
        let (user, kind) = (&ticket.ticket.username, ticket.ticket.kind);
        // One answer for "no such file here" and "not yours to read", so
        // a stranger learns nothing of what this node holds.
        let refused = || Failure::not_found(format!("no file {hash} here for you"));
        let allowed = match &channel {
            Some(channel) => {
                let shared = files
                    .inner
                    .store
                    .file_shared_in(channel.clone(), hash.clone())
                    .await
                    .map_err(crate::error::store_failure)?;
                shared.is_some() && files.may_read(channel, user, kind).await
            }
            // Shared in a direct message: for its conversation only.
            None => kind == AccountKind::User && files.dm_member(&hash, user).await,
        };
        let channel = channel.unwrap_or_default();
        if !allowed {
            files.inner.log.record(
                "FILE_REFUSED",
                link.addr,
                format!("hash={hash} channel={channel} user={user}"),
            );
            return Err(refused());
        }
        if !self.granted.iter().any(|(g, _)| *g == h) {
            if self.granted.len() >= MAX_GRANTS_PER_LINK {
                return Err(Failure::new(
                    segchat_proto::Status::RateLimited,
                    format!("at most {MAX_GRANTS_PER_LINK} files per link"),
                ));
            }
            files.inner.gate.grant(link.remote_id, h);
            self.granted.push((h, channel.clone()));
        }
        let size = files.complete_size(h).await;
        let seeders = files
            .holders(h)
            .into_iter()
            .filter(|n| n.node_id != link.remote_key)
            .take(peer::MAX_SEEDERS)
            .collect();
        files.inner.log.record(
            "FILE_OPEN",
            link.addr,
            format!(
                "hash={hash} channel={channel} user={user} have={} path={}",
                size.is_some(),
                link.path
            ),
        );
        Ok(Answer::Admitted(peer::Reply::FileOpened {
            hash,
            size,
            seeders,
        }))
    }
}
