//! argon2id with bounded memory.
//!
//! Every argon2id computation needs `m_cost` KiB of working memory (19 MiB
//! with the crate's defaults). Left alone, each concurrent sign-in
//! allocates its own, and glibc keeps freed blocks of that size in its
//! heap (its mmap threshold rises to the size of the first block freed),
//! so a burst of sign-ins grew the server by gigabytes for good.
//!
//! Here at most `slots` computations run at once, each in a buffer taken
//! from a pool and given back after (the argon2 crate fills caller-given
//! blocks, `hash_password_into_with_memory`), so argon2 never holds more
//! than `slots × m_cost` KiB whatever the allocator does. At most `queue`
//! more requests wait for a slot; beyond that [`HashError::Busy`] refuses
//! at once. When the last computation ends and nobody waits, the pool's
//! buffers are freed; each is reserved with a capacity above glibc's
//! largest mmap threshold (32 MiB) so it is always a mapping of its own,
//! and freeing it gives the memory back to the OS (measured; see
//! ARCHITECTURE.md). Only the first `m_cost` KiB of it are ever touched.
//!
//! Verification parses the stored PHC string itself, recomputes with the
//! stored salt and parameters, and compares the outputs in constant time
//! (`password_hash::Output`'s `PartialEq`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes asked of the allocator for each working buffer: above glibc's
/// largest dynamic mmap threshold, so the buffer is its own mapping.
const BUFFER_RESERVE_BYTES: usize = 33 * 1024 * 1024;

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HashError {
    /// Every slot is busy and the queue is full; try again shortly.
    #[error("the server is busy checking other passwords")]
    Busy,
    /// A stored hash that this server cannot check (corrupt, or made with
    /// more memory than a slot holds).
    #[error("unusable password hash: {0}")]
    BadHash(String),
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

/// Runs argon2id with at most `slots` working buffers alive at once.
#[derive(Debug)]
pub(crate) struct Hasher {
    params: Params,
    slots: Arc<Semaphore>,
    /// Requests admitted: running or waiting for a slot.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
    pool: Arc<Pool>,
    /// The salt and expected output an unknown user's password is
    /// checked against: the same work, never a match.
    dummy_salt: [u8; 16],
    dummy_output: [u8; 32],
}

/// Free working buffers.
#[derive(Debug)]
struct Pool {
    blocks: usize,
    free: Mutex<Vec<Vec<Block>>>,
}

impl Pool {
    fn take(&self) -> Vec<Block> {
        let reused = self.free.lock().unwrap_or_else(|e| e.into_inner()).pop();
        reused.unwrap_or_else(|| {
            let reserve = self.blocks.max(BUFFER_RESERVE_BYTES / Block::SIZE);
            let mut buffer = Vec::with_capacity(reserve);
            buffer.resize(self.blocks, Block::default());
            buffer
        })
    }

    fn give_back(&self, buffer: Vec<Block>) {
        self.free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(buffer);
    }
}

/// One admitted request; when the last one ends, the pool is emptied.
struct Admission {
    admitted: Arc<AtomicUsize>,
    pool: Arc<Pool>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.admitted.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut free = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
            // Checked again under the lock: a newcomer may have started.
            if self.admitted.load(Ordering::Acquire) == 0 {
                free.clear();
                free.shrink_to_fit();
            }
        }
    }
}

impl Hasher {
    /// argon2id with the crate's default parameters (19 MiB, t=2, p=1),
    /// `slots` at once, `queue` more waiting.
    pub(crate) fn new(slots: usize, queue: usize) -> Hasher {
        Self::with_params(Params::default(), slots, queue)
    }

    pub(crate) fn with_params(params: Params, slots: usize, queue: usize) -> Hasher {
        let slots = slots.max(1);
        let mut dummy_salt = [0u8; 16];
        let mut dummy_output = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut dummy_salt);
        rand::rngs::OsRng.fill_bytes(&mut dummy_output);
        Hasher {
            pool: Arc::new(Pool {
                blocks: params.block_count(),
                free: Mutex::new(Vec::new()),
            }),
            params,
            slots: Arc::new(Semaphore::new(slots)),
            admitted: Arc::new(AtomicUsize::new(0)),
            max_admitted: slots + queue,
            dummy_salt,
            dummy_output,
        }
    }

    /// Working memory one slot holds, in bytes.
    pub(crate) fn slot_bytes(&self) -> usize {
        self.pool.blocks * Block::SIZE
    }

    /// Hashes a password with a random salt into a PHC string.
    pub(crate) async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params.clone();
        self.run(move |blocks| {
            let salt = SaltString::generate(&mut rand::rngs::OsRng);
            let mut salt_bytes = [0u8; 64];
            let raw_salt = salt
                .decode_b64(&mut salt_bytes)
                .map_err(|e| HashError::Argon2(e.to_string()))?;
            let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
            let output = compute(&argon, &params, password.as_bytes(), raw_salt, blocks)?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: (&params)
                    .try_into()
                    .map_err(|e: argon2::password_hash::Error| HashError::Argon2(e.to_string()))?,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Checks a password against a stored PHC string; `None` (no such
    /// user) does the same work against a dummy and answers false.
    pub(crate) async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        let own_params = self.params.clone();
        let (dummy_salt, dummy_output) = (self.dummy_salt, self.dummy_output);
        self.run(move |blocks| {
            let Some(stored) = stored else {
                let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, own_params.clone());
                let output = compute(
                    &argon,
                    &own_params,
                    password.as_bytes(),
                    &dummy_salt,
                    blocks,
                )?;
                let expected = Output::new(&dummy_output).map_err(bad_hash)?;
                // Compared like a real hash (it never matches): same work.
                let _ = std::hint::black_box(output == expected);
                return Ok(false);
            };
            let phc = PasswordHash::new(&stored).map_err(bad_hash)?;
            let algorithm = Algorithm::try_from(phc.algorithm).map_err(bad_hash)?;
            let version = match phc.version {
                Some(v) => Version::try_from(v).map_err(|e| bad_hash(e.into()))?,
                None => Version::default(),
            };
            let params = Params::try_from(&phc).map_err(bad_hash)?;
            let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
                return Err(HashError::BadHash("no salt or no hash".into()));
            };
            let mut salt_bytes = [0u8; 64];
            let raw_salt = salt.decode_b64(&mut salt_bytes).map_err(bad_hash)?;
            let argon = Argon2::new(algorithm, version, params.clone());
            let output = compute(&argon, &params, password.as_bytes(), raw_salt, blocks)?;
            // Output's PartialEq compares in constant time.
            Ok(output == expected)
        })
        .await
    }

    /// Runs `job` on the blocking pool with a working buffer, once a slot
    /// is free; refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut [Block]) -> Result<T, HashError> + Send + 'static,
    ) -> Result<T, HashError> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.max_admitted {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Busy);
        }
        let admission = Admission {
            admitted: self.admitted.clone(),
            pool: self.pool.clone(),
        };
        let permit: OwnedSemaphorePermit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Busy)?;
        let pool = self.pool.clone();
        // The permit and the admission travel with the work: if the
        // asker goes away, the slot stays taken until the work ends.
        tokio::task::spawn_blocking(move || {
            let mut buffer = pool.take();
            let result = job(&mut buffer);
            pool.give_back(buffer);
            drop(permit);
            drop(admission);
            result
        })
        .await
        .map_err(|e| HashError::Argon2(format!("hashing task failed: {e}")))?
    }
}

/// One argon2 computation in the caller's blocks.
fn compute(
    argon: &Argon2<'_>,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    blocks: &mut [Block],
) -> Result<Output, HashError> {
    if params.block_count() > blocks.len() {
        return Err(HashError::BadHash(format!(
            "it needs {} KiB of memory; a slot holds {} KiB",
            params.block_count(),
            blocks.len()
        )));
    }
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    Output::init_with(len, |out| {
        argon
            .hash_password_into_with_memory(password, salt, out, &mut *blocks)
            .map_err(|_| argon2::password_hash::Error::Password)
    })
    .map_err(|e| HashError::Argon2(e.to_string()))
}

fn bad_hash(e: argon2::password_hash::Error) -> HashError {
    HashError::BadHash(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    #[tokio::test]
    async fn hashes_verify_and_differ() {
        let h = Hasher::new(2, 4);
        let a = h.hash("correct horse".into()).await.expect("hash");
        let b = h.hash("correct horse".into()).await.expect("hash");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(h
            .verify("correct horse".into(), Some(a.clone()))
            .await
            .expect("verify"));
        assert!(!h
            .verify("wrong horse".into(), Some(a.clone()))
            .await
            .expect("verify"));
        assert!(!h.verify("anything".into(), None).await.expect("verify"));
        // The argon2 crate's own verifier agrees: the PHC strings are standard.
        let parsed = PasswordHash::new(&a).expect("phc");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
    }

    #[tokio::test]
    async fn hashes_made_by_the_argon2_crate_still_verify() {
        use argon2::password_hash::PasswordHasher;
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let old = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .expect("hash")
            .to_string();
        let h = Hasher::new(1, 1);
        assert!(h
            .verify("correct horse".into(), Some(old.clone()))
            .await
            .expect("verify"));
        assert!(!h
            .verify("correct horsf".into(), Some(old))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn a_hash_needing_more_memory_than_a_slot_is_refused_not_computed() {
        let small = Params::new(1024, 1, 1, None).expect("params");
        let h = Hasher::with_params(small, 1, 1);
        let big = Hasher::new(1, 1)
            .hash("pw long enough".into())
            .await
            .expect("hash");
        assert!(matches!(
            h.verify("pw long enough".into(), Some(big)).await,
            Err(HashError::BadHash(_))
        ));
    }

    #[tokio::test]
    async fn beyond_slots_and_queue_requests_are_refused_at_once() {
        let h = Arc::new(Hasher::new(1, 1));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let h = h.clone();
                tokio::spawn(async move { h.verify("guess guess".into(), None).await })
            })
            .collect();
        let mut busy = 0;
        let mut done = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => done += 1,
                Err(HashError::Busy) => busy += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(done >= 2, "one running and one queued are served: {done}");
        assert!(busy >= 1, "the rest are refused: {busy}");
        assert_eq!(h.admitted.load(Ordering::Acquire), 0);
        assert!(
            h.pool.free.lock().expect("lock").is_empty(),
            "the buffers are freed once idle"
        );
    }
}
