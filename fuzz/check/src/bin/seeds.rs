//! Writes the seed corpus: `seeds [DIR]` (default `corpus`, run from
//! `fuzz/`) gets one file per seed under `DIR/<target>/seed-<name>`.
//! Existing files are kept, so the minimised corpus and crash inputs stay.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let seeds = segchat_fuzz_check::seeds::all();
    for seed in &seeds {
        let at = dir.join(seed.target);
        std::fs::create_dir_all(&at)?;
        std::fs::write(at.join(format!("seed-{}", seed.name)), &seed.bytes)?;
    }
    println!("wrote {} seeds under {}", seeds.len(), dir.display());
    Ok(())
}
