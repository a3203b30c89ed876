//! spacefabric-controller.
