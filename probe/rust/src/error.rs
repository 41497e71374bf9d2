use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a writer or a [`Probe`](crate::Probe) could not be opened. `Display` is one line naming
/// the thing and what to do; `Debug` prints the same line, so `fn main() -> Result<(), Error>`
/// ends with `Error: <that line>` rather than a struct dump (as `anyhow` does).
///
/// ```
/// use tickscope_probe::{Error, PointWriter};
///
/// let err = PointWriter::open("trader", &["md.rx"], 3).err().unwrap();
/// assert!(matches!(err, Error::Capacity(3)));
/// assert_eq!(format!("{err:?}"), "ring capacity must be a power of 2 >= 2: capacity=3");
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
pub enum Error {
    /// The ring capacity is not a power of two of at least 2.
    Capacity(u64),
    /// The point list is empty, too long, has a duplicate, or a name that does not fit.
    Points(String),
    /// The ring directory could not be created or written.
    RingDir {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The ring file could not be created, sized or mapped.
    RingFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
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
