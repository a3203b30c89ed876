//! `impl Exchange for transport::Mesh`: collectives over the QUIC fabric.

use std::future::Future;

use bytes::Bytes;

use super::exchange::{Exchange, ExchangeError};
use spacefabric_fabric::emu::EmuClock;
use spacefabric_fabric::transport::{Mesh, Payload, TransportError};

impl Exchange for Mesh {
    fn rank(&self) -> usize {
        Self::rank(self)
    }

    fn world_size(&self) -> usize {
        Self::world_size(self)
    }

    fn send(
        &self,
        to: usize,
        tag: u64,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let from = Self::rank(self);
        async move {
            Self::send(self, to, tag, payload)
                .await
                .map_err(send_failed(from, to))
        }
    }

    fn recv(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Bytes, ExchangeError>> + Send {
        let me = Self::rank(self);
        async move {
            Self::recv(self, from, tag)
                .await
                .map_err(recv_failed(me, from))
        }
    }

    /// The pieces go to QUIC as they are (no copy into one buffer).
    fn send_payload(
        &self,
        to: usize,
        tag: u64,
        payload: Payload,
    ) -> impl Future<Output = Result<(), ExchangeError>> + Send {
        let from = Self::rank(self);
        async move {
            Self::send_payload(self, to, tag, payload)
                .await
                .map_err(send_failed(from, to))
        }
    }

    /// The transfer as the pieces quinn delivered (no copy into one buffer).
    fn recv_payload(
        &self,
        from: usize,
        tag: u64,
    ) -> impl Future<Output = Result<Payload, ExchangeError>> + Send {
        let me = Self::rank(self);
        async move {
            Self::recv_payload(self, from, tag)
                .await
                .map_err(recv_failed(me, from))
        }
    }

    fn trunk_plan(&self) -> Option<&netem_profiles::TrunkPlan> {
        Some(Self::trunk_plan(self))
    }

    fn set_trunk_share(&self, peer: usize, connections: u32) {
        Self::set_trunk_share(self, peer, connections);
    }

    /// The mesh's scenario clock: every node counts from the controller's epoch.
    fn clock(&self) -> Option<EmuClock> {
        Some(*Self::clock(self))
    }
}

/// The error of a failed send from rank `from` to rank `to`, with the transport's as source.
fn send_failed(from: usize, to: usize) -> impl FnOnce(TransportError) -> ExchangeError {
    move |e| ExchangeError::with_source(format!("QUIC send from rank {from} to rank {to}"), e)
}

/// The error of a failed receive at rank `me` from rank `from`.
fn recv_failed(me: usize, from: usize) -> impl FnOnce(TransportError) -> ExchangeError {
    move |e| ExchangeError::with_source(format!("QUIC receive at rank {me} from rank {from}"), e)
}
