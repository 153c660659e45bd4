//! Which program the benchmark's generated module dirs run: the `benchmod` program when it is
//! built beside this binary (`cargo build --release -p benchmod`), a module built as its
//! author builds one; else this binary, which serves the same module (`main.rs` hands over
//! to `benchmod::serve` when started as one).
//!
//! Only the memory a module maps depends on the choice: this binary carries the core and
//! every benchmark, and a module process faults in several MB of that text, so the `rss`
//! row says which program its modules ran (docs/performance.md, "Twenty-seventh step").
//! Never fails: a program that is not there is a fallback, not an error.

use std::path::{Path, PathBuf};

/// The program behind every generated module dir's `main`, and how the rows name it.
#[derive(Debug, Clone)]
pub struct ModuleProgram {
    pub path: PathBuf,
    /// `true` for the `benchmod` program, `false` for this benchmark's binary.
    pub own: bool,
}

impl ModuleProgram {
    /// The `benchmod` program beside `exe` (this benchmark's binary), or `exe` itself.
    pub fn beside(exe: &Path) -> ModuleProgram {
        let own = exe.with_file_name(benchmod::EXE_NAME);
        if own.is_file() {
            ModuleProgram {
                path: own,
                own: true,
            }
        } else {
            ModuleProgram {
                path: exe.to_path_buf(),
                own: false,
            }
        }
    }

    /// Which program the modules ran, in words for a row's note.
    pub fn describe(&self) -> &'static str {
        if self.own {
            "the modules are the benchmod program (modules/benchmod), a module program of its own"
        } else {
            "the modules are this benchmark's binary (the core and every benchmark linked in): \
             the benchmod program is not built beside it (cargo build --release -p benchmod)"
        }
    }
}
