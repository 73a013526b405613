//! Which key a log signs its local writes with.

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use super::error::LogError;
use crate::hash::Hash;
use crate::identity::{now_ms, Identity, IdentityError};
use crate::node::Node;

/// How a log signs its local writes: with the replica's default identity (loaded or made on
/// first use), with one the app supplied, or not at all.
pub(crate) struct Signing {
    dir: PathBuf,
    choice: RwLock<Choice>,
}

#[derive(Clone)]
enum Choice {
    /// The replica's default identity, not loaded yet.
    Default,
    With(Box<Identity>),
    Off,
}

impl Signing {
    pub fn new(dir: &Path) -> Signing {
        Signing {
            dir: dir.into(),
            choice: RwLock::new(Choice::Default),
        }
    }

    /// The identity local writes are signed with, if any.
    pub fn current(&self) -> Result<Option<Identity>, IdentityError> {
        let choice = self
            .choice
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match choice {
            Choice::With(id) => Ok(Some(*id)),
            Choice::Off => Ok(None),
            Choice::Default => {
                let mut c = self.choice.write().unwrap_or_else(|e| e.into_inner());
                if let Choice::Default = *c {
                    *c = Choice::With(Box::new(Identity::load_or_create(&self.dir)?));
                }
                Ok(match &*c {
                    Choice::With(id) => Some((**id).clone()),
                    _ => None,
                })
            }
        }
    }

    pub fn set(&self, id: Option<Identity>) {
        *self.choice.write().unwrap_or_else(|e| e.into_inner()) = match id {
            Some(id) => Choice::With(Box::new(id)),
            None => Choice::Off,
        };
    }

    /// Builds a local node: signed now by the current identity, or unsigned when signing is
    /// off.
    pub fn node(
        &self,
        links: impl IntoIterator<Item = Hash>,
        payload: Vec<u8>,
    ) -> Result<Node, LogError> {
        Ok(match self.current()? {
            Some(id) => Node::signed(&id, now_ms(), links, payload)?,
            None => Node::new(links, payload)?,
        })
    }
}
