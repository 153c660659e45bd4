//! Where `logos_host` is when the core lives in a library inside someone else's executable.
//!
//! The core's own default looks beside the running executable, which for a C, Python or Node
//! application is the interpreter or the app, not where logos was installed. So this file looks,
//! in order: the path given with `logos_core_set_host_binary`; `$LOGOS_HOST`; `$LOGOS_HOST_PATH`
//! (the RFC's variable); `logos_host` beside `liblogos_core.so` itself, in its parent dir, or in
//! `../bin`; `../bin/logos_host` relative to each modules dir (the RFC's fallback). When none
//! exists the core's default applies (beside the executable, then `PATH`). The library's own
//! path comes from `/proc/self/maps` (the mapping that holds this code), which needs no `unsafe`
//! and also works when the library was linked statically (it then names the executable).
//! Never starts anything.

use std::path::{Path, PathBuf};

/// The `logos_host` to hand the core's builder, or `None` for the core's default.
pub(crate) fn find(configured: Option<&Path>, modules_dirs: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    for var in ["LOGOS_HOST", "LOGOS_HOST_PATH"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return Some(p.into());
        }
    }
    let beside_library = library_path().into_iter().flat_map(|lib| {
        let dir = lib.parent().map(Path::to_path_buf).unwrap_or_default();
        [
            dir.join("logos_host"),
            dir.join("../logos_host"),
            dir.join("../bin/logos_host"),
        ]
    });
    let beside_modules = modules_dirs.iter().map(|d| d.join("../bin/logos_host"));
    beside_library
        .chain(beside_modules)
        .find(|p| p.is_file())
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
}

/// The file this code was loaded from (`liblogos_core.so`, or the executable when linked
/// statically), from the mapping of `/proc/self/maps` that contains this function.
pub(crate) fn library_path() -> Option<PathBuf> {
    let here = library_path as fn() -> Option<PathBuf> as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| mapping_path(line, here))
}

/// The path of one `/proc/self/maps` line (`start-end perms offset dev inode path`) if the
/// mapping contains `addr`.
fn mapping_path(line: &str, addr: usize) -> Option<PathBuf> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    if !(start..end).contains(&addr) {
        return None;
    }
    let path = fields.nth(4)?.trim_start();
    path.starts_with('/').then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_maps_lines() {
        let line = "7f00a000-7f00b000 r-xp 00001000 08:01 1234                       /opt/logos/lib/liblogos_core.so";
        assert_eq!(
            mapping_path(line, 0x7f00a010),
            Some(PathBuf::from("/opt/logos/lib/liblogos_core.so"))
        );
        assert_eq!(mapping_path(line, 0x7f00b000), None);
        let anon = "7f00a000-7f00b000 rw-p 00000000 00:00 0 ";
        assert_eq!(mapping_path(anon, 0x7f00a010), None);
        let spaced = "1000-2000 r-xp 00000000 08:01 1 /a dir/lib.so";
        assert_eq!(
            mapping_path(spaced, 0x1000),
            Some(PathBuf::from("/a dir/lib.so"))
        );
    }

    #[test]
    fn finds_the_code_it_runs_in() {
        // In a unit test the code lives in the test executable.
        let exe = std::fs::canonicalize(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(library_path(), Some(exe));
    }

    #[test]
    fn configured_path_wins() {
        let p = Path::new("/x/logos_host");
        assert_eq!(find(Some(p), &[]), Some(p.to_path_buf()));
    }
}
