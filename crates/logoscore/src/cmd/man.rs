//! `logoscore man [--out-dir DIR]`: the man page, generated from the clap definitions in
//! `main.rs` with clap_mangen: `logoscore.1` on stdout, or one page per command
//! (`logoscore.1`, `logoscore-run.1`, …) written into DIR.

use crate::error::Error;
use std::path::{Path, PathBuf};

pub(crate) fn run(out_dir: Option<PathBuf>) -> Result<(), Error> {
    let cmd = crate::command();
    match out_dir {
        None => {
            let page = render(&cmd)?;
            crate::output::line(page.trim_end())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            write(&dir, "logoscore.1", &render(&cmd)?)?;
            for sub in cmd.get_subcommands() {
                let name = format!("logoscore-{}", sub.get_name());
                let page = sub.clone().name(name.clone());
                write(&dir, &format!("{name}.1"), &render(&page)?)?;
            }
            crate::output::line(&format!("wrote man pages to {}", dir.display()))?;
        }
    }
    Ok(())
}

fn render(cmd: &clap::Command) -> Result<String, Error> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut out)
        .map_err(|e| Error::io("cannot render the man page", e))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn write(dir: &Path, file: &str, page: &str) -> Result<(), Error> {
    let path = dir.join(file);
    std::fs::write(&path, page)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}
