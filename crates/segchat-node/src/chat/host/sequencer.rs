//! A hosted channel's sequencer: one thread per channel takes what is
//! queued, verifies the members' signatures in one batch, stores and
//! numbers the rest in one transaction and fans the broadcasts out.

use super::*;

impl Chat {
    /// Stores a message of this node's own (the user's, or one pulled from
    /// the server and verified) in a hosted channel if new, fans it out and
    /// schedules its backup. Returns its hosted sequence number. Members'
    /// posts take [`post`] instead.
    pub(super) async fn host_store(&self, m: Message, arrival: Arrival) -> Result<u64, Failure> {
        let (reply, answer) = oneshot::channel();
        self.queue_job(m, arrival, None, Answer::Local(reply))
            .await?;
        answer
            .await
            .map_err(|_| Failure::unavailable("this channel is no longer hosted here"))?
    }

    /// Hands a message to its channel's sequencer; `answer` hears how it
    /// ended (unless this fails).
    pub(super) async fn queue_job(
        &self,
        m: Message,
        arrival: Arrival,
        verify_from: Option<SocketAddr>,
        answer: Answer,
    ) -> Result<(), Failure> {
        self.observe(m.ts_ms);
        let queue = lock(&self.inner.hosting.channels)
            .get(&m.channel)
            .map(|h| h.sequencer.clone())
            .ok_or_else(|| {
                Failure::not_found(format!("this node does not host {:?}", m.channel))
            })?;
        queue
            .send(Job {
                message: m,
                arrival,
                verify_from,
                answer,
            })
            .await
            .map_err(|_| Failure::unavailable("this channel is no longer hosted here"))
    }

    /// Numbers, stores and fans out a hosted channel's messages in order:
    /// whatever is queued is written in one transaction, then broadcast in
    /// sequence order, then acknowledged.
    ///
    /// Runs on a thread of its own (one per hosted channel): a post goes
    /// from the member's connection to this thread and on to the members'
    /// writers with no hop through the blocking pool. Ends when the channel
    /// stops being hosted (its queue's senders are gone).
    pub(super) fn sequencer(self, channel: String, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < SEQUENCER_BATCH {
                match jobs.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let batch = self.refuse_forgeries(batch);
            if batch.is_empty() {
                continue;
            }
            let rows: Vec<(&Message, &Arrival)> =
                batch.iter().map(|j| (&j.message, &j.arrival)).collect();
            let stored = match self.store().host_append_blocking(&channel, &rows) {
                Ok(stored) => stored,
                Err(e) => {
                    let failure = super::super::internal(e);
                    for job in batch {
                        job.answer.send(&self, &channel, Err(failure.clone()));
                    }
                    continue;
                }
            };
            // One buffer of broadcasts for the whole batch: each member's
            // writer is woken once and writes it in one go.
            let mut frames = BytesMut::new();
            let mut tickets: Vec<UsedTicket> = Vec::new();
            let mut acks = Vec::with_capacity(batch.len());
            for (job, (new, seq)) in batch.into_iter().zip(stored) {
                if new {
                    let mut row = super::super::MessageRow::arrived(&job.message, &job.arrival);
                    row.host_seq = Some(seq);
                    let acted = crate::store::acted_on(&job.message);
                    let (message, ticket) = job.message.into_parts();
                    let (ticket_ref, assigned) = lock(&self.inner.hosting.tickets).number(&ticket);
                    if !tickets.iter().any(|(n, ..)| *n == ticket_ref) {
                        tickets.push((ticket_ref, assigned, ticket));
                    }
                    let event: PeerFrame = Frame::Event(peer::Event::Broadcast {
                        seq,
                        ticket_ref,
                        message,
                    });
                    if let Err(e) = event.encode(&mut frames) {
                        tracing::error!(error = %e, "could not encode a broadcast");
                    }
                    if row.source != Source::Local {
                        self.announce(row, acted);
                    }
                }
                acks.push((job.answer, seq));
            }
            let any_new = !frames.is_empty();
            if any_new {
                self.inner
                    .hosting
                    .fan_out(&channel, frames.freeze(), &tickets);
            }
            for (answer, seq) in acks {
                answer.send(&self, &channel, Ok(seq));
            }
            if any_new {
                self.inner.hosting.wake_backup(&channel);
            }
        }
    }

    /// Verifies the members' posts of a batch in one go; answers and logs
    /// the ones that are not authentic and returns the rest.
    fn refuse_forgeries(&self, batch: Vec<Job>) -> Vec<Job> {
        if batch.iter().all(|j| j.verify_from.is_none()) {
            return batch;
        }
        let verdicts: Vec<Result<(), String>> = match self.verifier() {
            Some(v) => {
                let posts: Vec<&Message> = batch
                    .iter()
                    .filter(|j| j.verify_from.is_some())
                    .map(|j| &j.message)
                    .collect();
                v.verify_all(&posts)
                    .into_iter()
                    .map(|r| r.map_err(|e| e.to_string()))
                    .collect()
            }
            None => vec![Err("the server's key is not known yet".into()); batch.len()],
        };
        let mut verdicts = verdicts.into_iter();
        let mut kept = Vec::with_capacity(batch.len());
        for job in batch {
            let Some(addr) = job.verify_from else {
                kept.push(job);
                continue;
            };
            // One verdict per post, in order.
            let verdict = verdicts
                .next()
                .unwrap_or_else(|| Err("it was not checked".into()));
            match verdict {
                Ok(()) => kept.push(job),
                Err(reason) => {
                    self.log_rejected(addr, &job.message, &reason);
                    job.answer.send(
                        self,
                        &job.message.channel,
                        Err(Failure::bad_request(format!(
                            "message is not authentic: {reason}"
                        ))),
                    );
                }
            }
        }
        kept
    }

    /// The user wrote in their own channel: it is stored by its host (this
    /// node) at once.
    pub(in crate::chat) async fn host_own(&self, m: Message) {
        let (id, channel) = (m.id.to_string(), m.channel.clone());
        let arrival = Arrival {
            source: Source::Local,
            from: None,
            host_seq: None,
            server_seq: None,
        };
        match self.host_store(m, arrival).await {
            Ok(_) => {
                self.set_state(id, &channel, DeliveryState::Stored, None)
                    .await
            }
            // Still pending: stored when hosting (re)starts.
            Err(f) => tracing::info!(reason = %f, "own message waits for hosting"),
        }
    }
}
