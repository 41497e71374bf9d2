use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a writer could not be opened. `Display` is one line naming the thing and what to do.
#[derive(Debug)]
pub enum Error {
    /// The ring capacity is not a power of two of at least 2.
    Capacity(u64),
    /// The point list is empty, too long, has a duplicate, or a name that does not fit.
    Points(String),
    /// The ring directory could not be created or written.
    RingDir { dir: PathBuf, source: io::Error },
    /// The ring file could not be created, sized or mapped.
    RingFile { path: PathBuf, source: io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Capacity(c) => write!(f, "ring capacity must be a power of 2 >= 2: capacity={c}"),
            Error::Points(why) => write!(f, "probe points: {why}"),
            Error::RingDir { dir, source } => write!(
                f,
                "ring directory {}: {source} (set TICKSCOPE_RING_DIR to a writable directory)",
                dir.display()
            ),
            Error::RingFile { path, source } => write!(f, "ring file {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::RingDir { source, .. } | Error::RingFile { source, .. } => Some(source),
            _ => None,
        }
    }
}
