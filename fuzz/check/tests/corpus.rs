//! Runs every target's check over its committed corpus (seeds, the
//! minimised corpus and the crash inputs kept there) without libFuzzer:
//! `cargo test --manifest-path fuzz/Cargo.toml -p segchat-fuzz-check`.
//! A crash input replays here as a plain test failure.

use std::path::Path;

use segchat_fuzz_check::TARGETS;

#[test]
fn every_corpus_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no corpus for {target} at {}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            // A running fuzzer replaces inputs it has shortened: skip one
            // that went away between listing and reading.
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            check(&bytes);
            n += 1;
        }
        assert!(n > 0, "the corpus of {target} is empty");
    }
}

#[test]
fn every_seed_passes_its_target() {
    for seed in segchat_fuzz_check::seeds::all() {
        let (_, check) = TARGETS
            .iter()
            .find(|(t, _)| *t == seed.target)
            .unwrap_or_else(|| panic!("a seed for an unknown target {}", seed.target));
        check(&seed.bytes);
    }
}

#[test]
fn the_message_seed_verifies_so_the_fuzzer_starts_past_the_signature() {
    let seed = segchat_fuzz_check::seeds::all()
        .into_iter()
        .find(|s| s.target == "message" && s.name == "message")
        .expect("a message seed");
    let m: segchat_proto::message::Message =
        serde_json::from_slice(&seed.bytes).expect("the seed is a message");
    assert_eq!(
        m.verify(&segchat_fuzz_check::server_key().verifying_key()),
        Ok(())
    );
}
