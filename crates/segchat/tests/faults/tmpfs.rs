//! A small tmpfs mounted over a node's data dir, to fill to the last byte.
//! Dropping a [`Tmpfs`] unmounts it (lazily, so a process still holding
//! files there does not keep it), also when the test panicked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

#[derive(Debug)]
pub(crate) struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB at `path` (made if missing).
    pub(crate) fn mount(path: &Path, mib: u32) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .context("could not run mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Writes a filler file until the file system refuses another byte.
    pub(crate) fn fill(&self) -> anyhow::Result<Filler> {
        let path = self.path.join("filler");
        let mut f = std::fs::File::create(&path)?;
        for chunk in [1 << 20, 4096, 1] {
            let buf = vec![0x5a_u8; chunk];
            while f.write_all(&buf).and_then(|()| f.flush()).is_ok() {}
        }
        let _ = f.sync_all();
        Ok(Filler { path })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).output();
    }
}

/// The file that fills the disk; removing it gives the space back.
#[derive(Debug)]
pub(crate) struct Filler {
    path: PathBuf,
}

impl Filler {
    pub(crate) fn free(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}
