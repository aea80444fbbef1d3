//! Routes over rtnetlink: typed codecs for the LWT encap attributes, a
//! readable model of every encap type the kernel knows, and the route
//! operations lwtkit needs (find, replace, delete, dump).
pub mod codec;
pub mod encap;
pub mod kernel;
pub mod link;
pub mod lookup;
pub mod netlink;
pub mod ops;
pub mod swap;
pub mod table;
