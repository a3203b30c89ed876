//! The one client of the controller, used by the node agent, the forwarder, the controller's
//! own CLI (`status`, `ping`) and the benches (issue 16, step 4): [`connect`] builds the
//! channel (http, or https trusting the cluster CA named by [`CA_CERT_ENV`]), [`follow`]
//! submits a job and follows it to its end, re-attaching by job id when the controller
//! restarts.
//!
//! Its own crate rather than a module of `spacefabric-proto`: the proto crate is the contract
//! (messages, vocabularies, pure arithmetic) and stays free of connections, retries and
//! clocks; every binary that talks to the controller depends on this one instead.

pub mod connect;
pub mod follow;

pub use connect::{
    CA_CERT_ENV, ClientError, ConnectOptions, RETIRED_CA_ENV, connect, connect_patiently, endpoint,
    read_ca, refuse_retired_ca_env,
};
pub use follow::{Followed, follow, submit, submit_and_follow};
