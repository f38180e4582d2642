//! The test binary's own log, kept for the test to read: what the service logged (a secret must
//! never be there; a warning must be there once, not once a failure).

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Everything logged through `tracing` by this test binary since [`Captured::install`].
#[derive(Clone, Default)]
pub struct Captured {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Also print each line with the test's output (on failure, or with `--nocapture`).
    echo: bool,
}

impl Captured {
    /// Installs the binary's one `tracing` subscriber at `filter` and returns its log. The first
    /// call decides: later calls return the same log, whatever they ask.
    pub fn install(filter: &str, echo: bool) -> &'static Captured {
        static LOG: OnceLock<Captured> = OnceLock::new();
        LOG.get_or_init(|| {
            let captured = Captured {
                echo,
                ..Captured::default()
            };
            let writer = captured.clone();
            tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .init();
            captured
        })
    }

    /// The log so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("log buffer")).into_owned()
    }

    /// How many times `text` was logged so far.
    pub fn count(&self, text: &str) -> usize {
        self.text().matches(text).count()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes
            .lock()
            .expect("log buffer")
            .extend_from_slice(buf);
        if self.echo {
            eprint!("{}", String::from_utf8_lossy(buf));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
