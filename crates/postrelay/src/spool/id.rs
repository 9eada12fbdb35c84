//! Queue ids: the names of messages on disk and in logs.
//!
//! A [`QueueId`] is a ULID printed in its canonical 26-character, upper-case
//! Crockford base32 form. Ids sort by arrival time (millisecond resolution)
//! and become file names, so parsing is strict: only the exact canonical form
//! is accepted, which makes it impossible for a string taken from a command
//! line, a control socket or a JSON file to name anything outside the spool
//! (`../etc/passwd` is simply not an id). This module does not touch the disk.

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Length of the printed form of a queue id.
const ID_LEN: usize = 26;

/// The Crockford base32 alphabet as `ulid` prints it (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Length of a message's file name: the id and its four-character suffix.
const NAME_LEN: usize = ID_LEN + 4;

/// File name suffix of a message body.
const BODY_SUFFIX: &str = ".msg";
/// File name suffix of a message envelope.
const ENVELOPE_SUFFIX: &str = ".env";

/// The id of one queued message, unique within a spool and time-ordered.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(Ulid);

/// Which of a message's two files a spool file name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// `<id>.msg`: the body, exactly as it will be sent.
    Body,
    /// `<id>.env`: the envelope (JSON).
    Envelope,
}

/// A string that is not a queue id; names the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid queue id {input:?}: {why}")]
pub struct InvalidQueueId {
    /// The rejected input (as given, for the error message).
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl QueueId {
    /// A fresh id for a message arriving now.
    ///
    /// 80 random bits follow the millisecond timestamp; the spool also creates
    /// the first file of a message with `O_EXCL`, so a collision cannot
    /// overwrite anything in `tmp/`.
    pub fn generate() -> QueueId {
        QueueId(Ulid::generate())
    }

    /// The arrival time encoded in the id, in milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        self.0.timestamp_ms()
    }

    /// The body's file name, `<id>.msg`.
    pub fn body_name(&self) -> String {
        self.file_name(FileKind::Body).as_str().to_owned()
    }

    /// The envelope's file name, `<id>.env`.
    pub fn envelope_name(&self) -> String {
        self.file_name(FileKind::Envelope).as_str().to_owned()
    }

    /// The file name of this message's `kind` of file, on the stack.
    pub fn file_name(&self, kind: FileKind) -> FileName {
        let mut id = [0u8; ID_LEN];
        self.0.array_to_str(&mut id);
        let suffix = match kind {
            FileKind::Body => BODY_SUFFIX,
            FileKind::Envelope => ENVELOPE_SUFFIX,
        };
        let mut name = [0u8; NAME_LEN];
        name[..ID_LEN].copy_from_slice(&id);
        name[ID_LEN..].copy_from_slice(suffix.as_bytes());
        FileName(name)
    }

    /// `dir/<file name>`, built in one allocation (these paths are made
    /// several times per message).
    pub fn path_in(&self, dir: &Path, kind: FileKind) -> PathBuf {
        let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + NAME_LEN);
        path.push(dir);
        path.push(self.file_name(kind).as_str());
        path
    }

    /// Recognises `<id>.msg` and `<id>.env`; anything else is `None`.
    pub fn from_file_name(name: &OsStr) -> Option<(QueueId, FileKind)> {
        let name = name.to_str()?;
        let (stem, kind) = if let Some(stem) = name.strip_suffix(BODY_SUFFIX) {
            (stem, FileKind::Body)
        } else if let Some(stem) = name.strip_suffix(ENVELOPE_SUFFIX) {
            (stem, FileKind::Envelope)
        } else {
            return None;
        };
        stem.parse().ok().map(|id| (id, kind))
    }
}

impl FromStr for QueueId {
    type Err = InvalidQueueId;

    /// Accepts only the canonical form: 26 characters from the upper-case
    /// Crockford alphabet, the first at most `7` (a ULID is 128 bits).
    fn from_str(s: &str) -> Result<QueueId, InvalidQueueId> {
        let bad = |why| InvalidQueueId {
            input: s.chars().take(64).collect(),
            why,
        };
        if s.len() != ID_LEN {
            return Err(bad("expected 26 characters"));
        }
        let mut value: u128 = 0;
        for (i, byte) in s.bytes().enumerate() {
            let Some(digit) = ALPHABET.iter().position(|&a| a == byte) else {
                return Err(bad(
                    "expected upper-case Crockford base32 (0-9, A-Z without I L O U)",
                ));
            };
            if i == 0 && digit > 7 {
                return Err(bad("out of range (first character must be 0-7)"));
            }
            value = (value << 5) | digit as u128;
        }
        Ok(QueueId(Ulid::from(value)))
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; ID_LEN];
        f.write_str(self.0.array_to_str(&mut buf))
    }
}

/// A message's file name, `<id>.msg` or `<id>.env`, without an allocation.
pub struct FileName([u8; NAME_LEN]);

impl FileName {
    /// The name (ASCII: the Crockford alphabet and a suffix).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueueId({self})")
    }
}

impl Serialize for QueueId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for QueueId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<QueueId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_round_trip_through_display_and_parse() {
        let id = QueueId::generate();
        let printed = id.to_string();
        assert_eq!(printed.len(), 26);
        assert_eq!(printed.parse::<QueueId>().unwrap(), id);
        assert_eq!(id.body_name(), format!("{printed}.msg"));
        assert_eq!(id.envelope_name(), format!("{printed}.env"));
        assert_eq!(
            id.path_in(Path::new("/s/queue"), FileKind::Envelope),
            Path::new(&format!("/s/queue/{printed}.env"))
        );
        assert_eq!(
            id.path_in(Path::new("/s/queue/"), FileKind::Body),
            Path::new(&format!("/s/queue/{printed}.msg"))
        );
    }

    #[test]
    fn created_ms_is_close_to_now_and_ids_order_by_time() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = QueueId::generate();
        assert!(id.created_ms().abs_diff(now) < 60_000);
        let early: QueueId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let late: QueueId = "01BX5ZZKBKACTAV9WEVGEMMVRZ".parse().unwrap();
        assert!(early < late);
        assert!(early.created_ms() < late.created_ms());
        let built = QueueId(Ulid::from_parts(1_469_918_176_385, 42));
        assert_eq!(built.created_ms(), 1_469_918_176_385);
        assert_eq!(
            built.to_string().parse::<QueueId>().unwrap().created_ms(),
            1_469_918_176_385
        );
    }

    #[test]
    fn rejects_everything_but_the_canonical_form() {
        for bad in [
            "",
            "../etc/passwd",
            "../../../../../../../../etc",
            "01arz3ndektsv4rrffq69g5fav", // lower case is not what we print
            "01ARZ3NDEKTSV4RRFFQ69G5FA",  // 25
            "01ARZ3NDEKTSV4RRFFQ69G5FAVX",
            "01ARZ3NDEKTSV4RRFFQ69G5FAI", // I is not in the alphabet
            "01ARZ3NDEKTSV4RRFFQ69G5FA/",
            "81ARZ3NDEKTSV4RRFFQ69G5FAV", // > 128 bits
            "01ARZ3NDEKTSV4RRFFQ69G5FAÄ",
        ] {
            let err = bad.parse::<QueueId>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn file_names_are_recognised_strictly() {
        let id = QueueId::generate();
        assert_eq!(
            QueueId::from_file_name(OsStr::new(&id.body_name())),
            Some((id, FileKind::Body))
        );
        assert_eq!(
            QueueId::from_file_name(OsStr::new(&id.envelope_name())),
            Some((id, FileKind::Envelope))
        );
        for other in [
            format!("{id}"),
            format!("{id}.env.tmp"),
            format!("{id}.json"),
            "lock".to_string(),
            ".env".to_string(),
            format!("x{id}.msg"),
        ] {
            assert_eq!(QueueId::from_file_name(OsStr::new(&other)), None, "{other}");
        }
    }

    #[test]
    fn serde_uses_the_string_form_and_validates() {
        let id: QueueId = "01ARZ3NDEKTSV4RRFFQ69G5FAV".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"");
        assert_eq!(serde_json::from_str::<QueueId>(&json).unwrap(), id);
        let err = serde_json::from_str::<QueueId>("\"../x\"").unwrap_err();
        assert!(err.to_string().contains("invalid queue id"), "{err}");
    }

    proptest! {
        #[test]
        fn any_u128_round_trips(v in any::<u128>()) {
            let id = QueueId(Ulid::from(v));
            prop_assert_eq!(id.to_string().parse::<QueueId>().unwrap(), id);
        }

        #[test]
        fn parse_never_accepts_path_characters(s in "\\PC{0,40}") {
            if let Ok(id) = s.parse::<QueueId>() {
                prop_assert_eq!(id.to_string(), s.clone());
                prop_assert!(!s.contains('/') && !s.contains('.'));
            }
        }
    }
}
