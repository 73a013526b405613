//! Sessions over tokio byte streams (feature `net`): [`conn`] frames one connection,
//! [`driver`] moves messages between it and a session, [`server`] accepts connections from
//! any transport under one overload policy, [`tcp`] is the plain TCP transport, [`budget`]
//! the memory all sessions of a server share, [`options`] what a caller says and gets back.

pub(crate) mod budget;
pub(crate) mod conn;
pub(crate) mod driver;
pub(crate) mod options;
pub(crate) mod server;
pub(crate) mod tcp;
